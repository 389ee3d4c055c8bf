"""The README's "Use AdaTask in your own model" example runs exactly as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example():
    section = README.read_text().split("## Use AdaTask in your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_verbatim():
    namespace = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    opt, trunk = namespace["opt"], namespace["trunk"]
    # it really trained with per-task moments: two tasks' states on every shared parameter
    for p in trunk.parameters():
        assert opt.state[p]["exp_avg_sq"].shape == (2, *p.shape)
        assert int(opt.state[p]["step"]) == 20


def test_readme_method_table_is_the_registry_table():
    from optim.weighting import method_table

    assert method_table() in README.read_text()
