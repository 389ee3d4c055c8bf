"""The README's "Use AdaTask in your own model" example runs exactly as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example():
    section = README.read_text().split("## Use AdaTask in your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


IMPORT = "from optim import AdamWithAdaTask as AdaTask"


@pytest.mark.parametrize("base", ["AdamWithAdaTask", "RMSpropWithAdaTask", "AdagradWithAdaTask"])
@pytest.mark.usefixtures("seeded_and_restored")
def test_readme_example_runs_verbatim_for_every_base_with_one_changed_line(base):
    code = readme_example()
    assert IMPORT in code
    namespace = {}
    example = code.replace(IMPORT, IMPORT.replace("AdamWithAdaTask", base))
    exec(compile(example, str(README), "exec"), namespace)  # noqa: S102 -- running the README's example is the test
    opt, trunk = namespace["opt"], namespace["trunk"]
    assert type(opt).__name__ == base
    # it really trained with per-task moments: two tasks' states on every shared parameter
    for p in trunk.parameters():
        assert all(opt.state[p][name].shape == (2, *p.shape) for name in opt.state_names)
        assert int(opt.state[p]["step"]) == 20


def test_readme_method_table_is_the_registry_table():
    """Every column but "Against the published code", which comes from the goldens
    (tests/test_goldens.py checks the whole table)."""
    from optim.weighting import method_table

    def without_column(lines):
        return ["|".join(cells[:5] + cells[6:]) for cells in (line.split("|") for line in lines)]

    registry = method_table().splitlines()
    readme = README.read_text().splitlines()
    start = readme.index(registry[0])
    assert without_column(readme[start:start + len(registry)]) == without_column(registry)


def test_readme_method_list_is_the_registry_list():
    from optim import method_list

    assert f"| `--method` | `adam_with_adatask` | optimizer: {method_list()} |" in README.read_text()


def test_readme_demo_table_is_the_committed_one():
    committed = [line for line in (README.parent / "results" / "demo.md").read_text().splitlines()
                 if line.startswith("|")]
    assert "\n".join(committed) in README.read_text()
