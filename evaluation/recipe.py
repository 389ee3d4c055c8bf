"""Recipes: a published results table, its protocol and the flags that reproduce each row
(docs/recipes.md). One TOML file per table in recipes/; load_recipe validates it.

Reading a recipe needs no torch: the file is parsed with tomllib and checked here. Only the
check that every flag exists in main_cityscapes.py's parser imports experiment.flags (and so
torch), inside load_recipe(check_flags=True); pass check_flags=False where torch must stay out.

Published numbers are stored as TOML numbers in the paper's units, exactly as printed. tomllib
loses how many digits were printed ("93.10" reads as 93.1), which the Δm consistency check
needs (each number stands for an interval of ± half its last printed digit), so the loader
also reads each `published = { ... }` inline table from the file's text and keeps the literal
of every value in Row.published_text. A published table must therefore stay on one line and
write plain decimals (no exponent, no underscores); the loader checks that the text and the
parsed numbers agree.
"""
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
RECIPES = REPOSITORY / "recipes"

EVALUATIONS = ("final", "last", "best")
DELTA_M = "delta_m"
ROW_NAME = re.compile(r"[a-z0-9_]+")
SINGLE = "single"  # the single-task row's name; no [[rows]] may take it
DECIMAL = re.compile(r"[-+]?\d+(\.\d+)?")

TOP_KEYS = {"name": True, "version": True, "title": True, "source": True, "protocol": True, "units": True,
            "single_task": True, "rows": True, "delta_m_sign": False, "inconsistent_delta_m": False}
SOURCE_KEYS = {"paper": True, "authors": True, "venue": True, "year": True, "table": True, "arxiv": False,
               "doi": False, "url": False, "found_with": False, "notes": False}
PROTOCOL_KEYS = {"dataset": True, "release": False, "network": True, "classes": True, "image_size": True,
                 "epochs": True, "batch_size": True, "optimizer": True, "augmentation": False, "evaluation": True,
                 "evaluation_epochs": False, "seeds": True, "flags": True, "notes": False,
                 "train_samples": True, "test_samples": True}
SINGLE_KEYS = {"label": True, "method": True, "flags": False, "published": True, "note": False}
ROW_KEYS = {"name": True, "label": True, "method": False, "weighting": False, "flags": False, "runnable": False,
            "published": True, "note": False}


class RecipeError(ValueError):
    """A recipe that does not load; the message names the file and the field, and what was expected."""


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    method: str | None
    weighting: str | None
    flags: tuple[str, ...]
    runnable: bool
    published: dict[str, float]
    note: str = ""
    # the literal text of each published value, as printed in the paper (for its digits)
    published_text: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Recipe:
    name: str
    version: int
    title: str
    source: dict
    protocol: dict
    flags: tuple[str, ...]
    seeds: tuple[int, ...]
    evaluation: str
    evaluation_epochs: int | None
    units: dict[str, float]
    delta_m_sign: int
    single_task: Row
    rows: tuple[Row, ...]
    path: Path
    inconsistent_delta_m: tuple[str, ...] = ()


def metric_keys():
    """The metric keys a published table may hold: every registered task's reported metrics
    (from the registry alone, no torch), plus delta_m."""
    from tasks import TASKS, reported_metric_keys
    return tuple(reported_metric_keys(TASKS)) + (DELTA_M,)


def recipe_path(name_or_path):
    """"nash_mtl" -> <repository>/recipes/nash_mtl.toml; anything with a suffix or a directory
    part is a path and stays one."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix or len(path.parts) > 1:
        return path
    return RECIPES / f"{text}.toml"


def recipe_names():
    """The stems of recipes/*.toml, sorted."""
    return sorted(path.stem for path in RECIPES.glob("*.toml"))


def in_repository_units(recipe, published):
    """{key: value / units[key]}: a published table in the repository's units (mIoU 0.7401, not
    74.01); delta_m stays as it is (percent in both)."""
    return {key: value if key == DELTA_M else value / recipe.units[key] for key, value in published.items()}


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, where, expected, got=None):
        tail = f", got {got!r}" if got is not None else ""
        raise RecipeError(f"recipe {self.path}: {where}: expected {expected}{tail}")

    def keys(self, table, spec, where):
        if not isinstance(table, dict):
            self.fail(where, "a table", table)
        for key in table:
            if key not in spec:
                self.fail(f"{where}.{key}" if where else key, f"one of the keys {', '.join(spec)} (unknown key)")
        for key, required in spec.items():
            if required and key not in table:
                self.fail(f"{where}.{key}" if where else key, "this field (missing)")

    def string(self, value, where, empty=False):
        if not isinstance(value, str) or (not empty and not value.strip()):
            self.fail(where, "a non-empty string" if not empty else "a string", value)
        return value

    def integer(self, value, where, minimum=None):
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            self.fail(where, "an integer" + (f" >= {minimum}" if minimum is not None else ""), value)
        return value

    def number(self, value, where, positive=True):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                (positive and value <= 0):
            self.fail(where, "a positive number" if positive else "a finite number", value)
        return float(value)

    def strings(self, value, where):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, "a list of strings", value)
        return tuple(value)


def _published_texts(text):
    """{section: {key: literal}} of each one-line `published = { ... }` in the file's text; the
    section is "single_task" or the index of its [[rows]] table."""
    section, row = None, -1
    found = {}
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("[["):
            section = stripped.strip("[] ")
            if section == "rows":
                row += 1
            continue
        if stripped.startswith("["):
            section = stripped.strip("[] ")
            continue
        match = re.fullmatch(r"published\s*=\s*\{(.*)\}", stripped)
        if match is None:
            continue
        key = "single_task" if section == "single_task" else row if section == "rows" else None
        pairs = [p.strip() for p in match.group(1).split(",") if p.strip()]
        found[key] = dict(tuple(s.strip() for s in pair.split("=", 1)) for pair in pairs if "=" in pair)
    return found


def _published(check, table, where, texts, allowed):
    if not isinstance(table, dict):
        check.fail(where, "an inline table of published numbers", table)
    if texts is None:
        check.fail(where, "an inline table on one line, `published = { key = number, ... }` (its printed digits "
                          "are read from the text)")
    values = {}
    for key, value in table.items():
        if key not in allowed:
            check.fail(f"{where}.{key}", f"a metric key: one of {', '.join(allowed)}")
        values[key] = check.number(value, f"{where}.{key}", positive=key != DELTA_M)
        literal = texts.get(key)
        if literal is None or not DECIMAL.fullmatch(literal) or float(literal) != values[key]:
            check.fail(f"{where}.{key}", "a plain decimal as printed in the paper, on the table's one line",
                       literal if literal is not None else value)
    return values, {key: texts[key] for key in values}


def _row(check, table, where, texts, allowed, single=False):
    check.keys(table, SINGLE_KEYS if single else ROW_KEYS, where)
    name = SINGLE if single else check.string(table["name"], f"{where}.name")
    if not single and (not ROW_NAME.fullmatch(name) or name == SINGLE):
        check.fail(f"{where}.name", f"letters a-z, digits and _ (a run-folder prefix), not {SINGLE!r}", name)
    label = check.string(table["label"], f"{where}.label")
    runnable = True if single else table.get("runnable", True)
    if not isinstance(runnable, bool):
        check.fail(f"{where}.runnable", "true or false", runnable)
    method = table.get("method")
    weighting = "ew" if single else table.get("weighting")
    for key, value in (("method", method), ("weighting", weighting)):
        if value is None:
            if runnable:
                check.fail(f"{where}.{key}", "a name (a runnable row needs --method and --weighting)")
        else:
            check.string(value, f"{where}.{key}")
    flags = check.strings(table.get("flags", []), f"{where}.flags")
    note = check.string(table.get("note", ""), f"{where}.note", empty=True)
    published, text = _published(check, table["published"], f"{where}.published", texts, allowed)
    if single and DELTA_M in published:
        check.fail(f"{where}.published.{DELTA_M}", "no Δm in the single-task row (it is the baseline)")
    return Row(name=name, label=label, method=method, weighting=weighting, flags=flags, runnable=runnable,
               published=published, note=note, published_text=text)


def _check_owned(check, flags, where):
    from runfolder.launcher_flags import owned_flag
    for token in flags:
        owned = owned_flag(token)
        if owned is not None:
            check.fail(where, f"no {owned}: the sweep sets it for every run", token)


def _check_registries(check, row, where):
    from optim import OPTIMIZERS
    from optim.weighting import WEIGHTINGS
    if row.method not in OPTIMIZERS:
        check.fail(f"{where}.method", f"one of {', '.join(OPTIMIZERS)}", row.method)
    if row.weighting not in WEIGHTINGS:
        check.fail(f"{where}.weighting", f"one of {', '.join(WEIGHTINGS)}", row.weighting)


def _check_flags(check, recipe):
    """Every runnable row's flags, after the protocol's, parse with main_cityscapes.py's parser
    and pass its value checks; a row's method flags belong to its own weighting."""
    from experiment import flags as run_flags
    from optim.weighting import WEIGHTINGS
    from optim.weighting.cli import flag_dest

    rows = [(recipe.single_task, "single_task")] + [(row, f"rows[{i}]") for i, row in enumerate(recipe.rows)]
    for row, where in rows:
        if not row.runnable:
            continue
        _check_registries(check, row, where)
        argv = list(recipe.flags) + list(row.flags) + ["--method", row.method, "--weighting", row.weighting]
        parser = run_flags.build_parser()

        def refuse(message, where=where, argv=argv):
            check.fail(f"{where}.flags", "flags main_cityscapes.py accepts (with protocol.flags before them)",
                       f"{' '.join(argv)}: {message}")

        parser.error = refuse
        args = parser.parse_args(argv)
        run_flags.check_values(parser, args, refuse)
        given = set()
        if row.flags:
            quiet = run_flags.build_parser()
            quiet.error = refuse
            for action in quiet._actions:
                action.default = run_flags.argparse.SUPPRESS
            given = set(vars(quiet.parse_args(list(row.flags))))
        own = {flag_dest(row.weighting, option) for option in WEIGHTINGS[row.weighting].OPTIONS}
        for method, cls in WEIGHTINGS.items():
            for option in cls.OPTIONS:
                dest = flag_dest(method, option)
                if dest in given and dest not in own:
                    check.fail(f"{where}.flags", f"only flags of --weighting {row.weighting} (a row's convention "
                                                 f"switches)", f"--{dest.replace('_', '-')} of --weighting {method}")


def load_recipe(name_or_path, check_flags=True):
    """The validated Recipe of a name in recipes/ or a path. RecipeError names the file and the
    field. check_flags=False skips the checks that import the registries and the run parser (torch)."""
    path = recipe_path(name_or_path)
    check = _Checker(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError(f"recipe {path}: cannot read it ({e.strerror}); known recipes: "
                          f"{', '.join(recipe_names()) or 'none'}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"recipe {path}: invalid TOML ({e})") from e
    check.keys(data, TOP_KEYS, "")
    name = check.string(data["name"], "name")
    if name != path.stem:
        check.fail("name", f"the file's stem {path.stem!r}", name)
    version = check.integer(data["version"], "version", minimum=1)
    title = check.string(data["title"], "title")

    source = data["source"]
    check.keys(source, SOURCE_KEYS, "source")
    for key in ("paper", "authors", "venue", "table"):
        check.string(source[key], f"source.{key}")
    check.integer(source["year"], "source.year", minimum=1900)
    if "arxiv" not in source and "doi" not in source:
        check.fail("source.arxiv", "an arXiv id or a source.doi (where the numbers come from)")
    for key in ("arxiv", "doi", "url", "found_with", "notes"):
        if key in source:
            check.string(source[key], f"source.{key}")

    protocol = data["protocol"]
    check.keys(protocol, PROTOCOL_KEYS, "protocol")
    for key in ("dataset", "network", "image_size", "optimizer"):
        check.string(protocol[key], f"protocol.{key}")
    for key in ("release", "augmentation", "notes"):
        if key in protocol:
            check.string(protocol[key], f"protocol.{key}")
    for key in ("classes", "epochs", "batch_size", "train_samples", "test_samples"):  # samples: --estimate's
        check.integer(protocol[key], f"protocol.{key}", minimum=1)
    evaluation = protocol["evaluation"]
    if evaluation not in EVALUATIONS:
        check.fail("protocol.evaluation", f"one of {', '.join(EVALUATIONS)}", evaluation)
    evaluation_epochs = protocol.get("evaluation_epochs")
    if evaluation == "last":
        evaluation_epochs = check.integer(evaluation_epochs, "protocol.evaluation_epochs", minimum=1)
    elif evaluation_epochs is not None:
        check.fail("protocol.evaluation_epochs", f"nothing with evaluation = {evaluation!r} (only with \"last\")",
                   evaluation_epochs)
    seeds = protocol["seeds"]
    if not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds):
        check.fail("protocol.seeds", "a non-empty list of distinct integers", seeds)
    seeds = tuple(check.integer(seed, "protocol.seeds", minimum=0) for seed in seeds)
    flags = check.strings(protocol["flags"], "protocol.flags")
    _check_owned(check, flags, "protocol.flags")

    allowed = metric_keys()
    units = data["units"]
    if not isinstance(units, dict):
        check.fail("units", "a table {metric: factor} (published = ours × factor)", units)
    for key, factor in units.items():
        if key not in allowed:
            check.fail(f"units.{key}", f"a metric key: one of {', '.join(allowed)}")
        check.number(factor, f"units.{key}")
    units = {key: float(factor) for key, factor in units.items()}

    sign = data.get("delta_m_sign", 1)
    if sign not in (1, -1) or isinstance(sign, bool):
        check.fail("delta_m_sign", "1 (Δm as the repository computes it, lower is better) or -1", sign)

    texts = _published_texts(text)
    single = _row(check, data["single_task"], "single_task", texts.get("single_task"), allowed, single=True)
    rows = data["rows"]
    if not isinstance(rows, list) or not rows:
        check.fail("rows", "one or more [[rows]] tables", rows)
    rows = tuple(_row(check, row, f"rows[{i}]", texts.get(i), allowed) for i, row in enumerate(rows))
    names = [row.name for row in rows]
    for i, row in enumerate(rows):
        if names.index(row.name) != i:
            check.fail(f"rows[{i}].name", "a name no other row has", row.name)
    for row, where in [(single, "single_task")] + [(row, f"rows[{i}]") for i, row in enumerate(rows)]:
        _check_owned(check, row.flags, f"{where}.flags")
        for key in row.published:
            if key not in units:
                check.fail(f"units.{key}", f"the factor of {key}, which {where}.published holds")

    inconsistent = data.get("inconsistent_delta_m", [])
    inconsistent = check.strings(inconsistent, "inconsistent_delta_m")
    for row_name in inconsistent:
        row = next((row for row in rows if row.name == row_name), None)
        if row is None or DELTA_M not in row.published:
            check.fail("inconsistent_delta_m", "names of rows that publish a delta_m", row_name)

    recipe = Recipe(name=name, version=version, title=title, source=dict(source), protocol=dict(protocol),
                    flags=flags, seeds=seeds, evaluation=evaluation, evaluation_epochs=evaluation_epochs,
                    units=units, delta_m_sign=sign, single_task=single, rows=rows, path=path,
                    inconsistent_delta_m=inconsistent)
    if check_flags:
        _check_flags(check, recipe)
    return recipe


def half_unit(literal):
    """Half of the last printed digit of a decimal literal: "93.16" -> 0.005, "118.5" -> 0.05."""
    decimals = len(literal.split(".", 1)[1]) if "." in literal else 0
    return 0.5 * 10.0 ** -decimals


def delta_m_interval(recipe, row):
    """(low, high) of Δm recomputed with evaluation.delta_m.delta_m from the row's published
    metrics against the recipe's published single-task row, each number anywhere in its
    rounding interval (± half its last printed digit), in the repository's units and sign.
    Δm is monotone in every metric and every baseline value (each term is ±(M/B − 1) with
    B > 0), so its extremes lie at the corners of the box: all corners are evaluated."""
    from evaluation.delta_m import delta_m

    keys = list(recipe.single_task.published)
    if not keys or not all(key in row.published for key in keys):
        raise ValueError(f"recipe {recipe.name}: row {row.name} lacks a metric of the single-task row "
                         f"({', '.join(recipe.single_task.published)})")
    spots = [(row, key) for key in keys] + [(recipe.single_task, key) for key in keys]
    values = []
    for signs in itertools.product((-1, 1), repeat=len(spots)):
        corner = {id(recipe.single_task): {}, id(row): {}}
        for (owner, key), sign in zip(spots, signs):
            value = owner.published[key] + sign * half_unit(owner.published_text[key])
            corner[id(owner)][key] = value / recipe.units[key]
        values.append(delta_m(corner[id(row)], corner[id(recipe.single_task)]))
    return min(values), max(values)


def published_delta_m_interval(recipe, row):
    """(low, high) of the row's published Δm (± half its last printed digit), in the repository's
    sign convention (recipe.delta_m_sign)."""
    value = row.published[DELTA_M] * recipe.delta_m_sign
    half = half_unit(row.published_text[DELTA_M])
    return value - half, value + half


def delta_m_check(recipe):
    """[(row, published interval, recomputed interval, agrees)] for every row that publishes Δm
    and every metric of the single-task row; agrees when the two intervals intersect."""
    results = []
    for row in recipe.rows:
        if DELTA_M not in row.published or not all(key in row.published for key in recipe.single_task.published):
            continue
        published = published_delta_m_interval(recipe, row)
        recomputed = delta_m_interval(recipe, row)
        agrees = published[0] <= recomputed[1] and recomputed[0] <= published[1]
        results.append((row, published, recomputed, agrees))
    return results
