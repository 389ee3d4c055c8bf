"""The import layers of docs/design.md, "Layers", hold: no module imports from a layer above
its own, whether at module level, inside a function or under TYPE_CHECKING."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESIGN_DOC = REPO / "docs" / "design.md"
NOT_CHECKED = {"scripts", "tests", "dataset", "results", "runs", "docs"}


def layers():
    """{module prefix: layer number} from the table of docs/design.md, "Layers"."""
    section = DESIGN_DOC.read_text().split("\n### Layers\n", 1)[1].split("\n#", 1)[0]
    table = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if match:
            for module in re.findall(r"`([\w.]+)`", match.group(2)):
                table[module] = int(match.group(1))
    assert table, f"{DESIGN_DOC}: no layer table under \"### Layers\""
    return table


def layer_of(module, table):
    """The layer of the longest listed prefix of `module`; None for a module outside the repository."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return table[".".join(parts[:end])]
    return None


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def repository_modules():
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative.parts[0] in NOT_CHECKED or any(part.startswith(".") for part in relative.parts):
            continue
        yield path


def imported_modules(path):
    """Every module `path` imports, relative imports resolved, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module too
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_every_repository_module_has_a_layer():
    table = layers()
    assert [module_name(p) for p in repository_modules() if layer_of(module_name(p), table) is None] == []


def test_no_module_imports_from_a_higher_layer():
    table = layers()
    upward = []
    for path in repository_modules():
        own = layer_of(module_name(path), table)
        for imported in imported_modules(path):
            theirs = layer_of(imported, table)
            if theirs is not None and theirs > own:
                upward.append(f"{path.relative_to(REPO)} (layer {own}) imports {imported} (layer {theirs})")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds imports inside functions and under TYPE_CHECKING, relative ones included."""
    package = tmp_path / "optim"
    package.mkdir()
    source = package / "sample.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from experiment import flags\n"
                      "def f():\n    from ..sweeps import cli\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        found = set(imported_modules(source))
    finally:
        REPO = saved
    table = layers()
    assert {"experiment.flags", "sweeps.cli"} <= found
    assert layer_of("experiment.flags", table) > layer_of("optim.sample", table)
