"""Recipes (recipes/*.toml, evaluation/recipe.py): every recipe loads, its flags parse with
main_cityscapes.py's parser, schema errors name the file and the field, and every published Δm
agrees with the row's published metrics (or the recipe records that it does not)."""
import subprocess
import sys
import textwrap

import pytest

from evaluation import recipe as recipes
from evaluation.recipe import RecipeError, load_recipe

REQUIRED = ("adatask", "cagrad", "famo", "nash_mtl")

VALID = textwrap.dedent("""\
    name = "{name}"
    version = 1
    title = "a test table"
    {top}
    [source]
    paper = "A paper"
    authors = "A. Author"
    venue = "Nowhere"
    year = 2022
    table = "Table 1"
    arxiv = "0000.00000"

    [protocol]
    dataset = "CityScapes"
    network = "SegNet-MTAN"
    classes = 7
    image_size = "128x256"
    epochs = 2
    batch_size = 8
    train_samples = 16
    test_samples = 8
    optimizer = "Adam"
    evaluation = "last"
    evaluation_epochs = 1
    seeds = [0, 1]
    flags = ["--epochs", "2"]

    [units]
    miou = 100
    pix_acc = 100
    abs_err = 1
    rel_err = 1
    delta_m = 1

    [single_task]
    label = "STL"
    method = "adam"
    published = {{ miou = 74.01, pix_acc = 93.16, abs_err = 0.0125, rel_err = 27.77 }}

    [[rows]]
    name = "ls"
    label = "LS"
    method = "adam"
    weighting = "ew"
    flags = {flags}
    published = {{ miou = 75.18, pix_acc = 93.49, abs_err = 0.0155, rel_err = 46.77, delta_m = {delta_m} }}

    [[rows]]
    name = "{second}"
    label = "DWA"
    method = "adam"
    weighting = "dwa"
    flags = ["--dwa-mode", "iteration"]
    published = {{ miou = 75.24, pix_acc = 93.52, abs_err = 0.0160, rel_err = 44.37, delta_m = 21.45 }}
    """)


def write(tmp_path, name="table", top="", flags="[]", delta_m="22.60", second="dwa", edit=None):
    text = VALID.format(name=name, top=top, flags=flags, delta_m=delta_m, second=second)
    if edit is not None:
        text = edit(text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def loaded():
    return {name: load_recipe(name) for name in recipes.recipe_names()}


def test_the_four_tables_are_there(loaded):
    assert set(REQUIRED) <= set(loaded)
    for name, recipe in loaded.items():
        assert recipe.name == name and recipe.path == recipes.recipe_path(name)
        assert recipe.source.get("arxiv") or recipe.source.get("doi")


def test_every_runnable_row_parses_with_the_run_parser(loaded):
    """load_recipe checked them; here once more, directly, as the sweep will pass them."""
    from experiment.flags import build_parser
    parser = build_parser()
    for recipe in loaded.values():
        for row in (recipe.single_task,) + recipe.rows:
            if not row.runnable:
                assert row.published, f"{recipe.name}/{row.name}: a row we cannot run keeps its numbers"
                continue
            args = parser.parse_args(list(recipe.flags) + list(row.flags) +
                                     ["--method", row.method, "--weighting", row.weighting])
            assert (args.method, args.weighting, args.epochs) == (row.method, row.weighting, 200)


def test_a_row_copied_between_tables_runs_the_same_way(loaded):
    """Nash-MTL's Table 3 repeats rows of CAGrad's Table 2 and FAMO's repeats Nash-MTL's: a row
    printed with the same numbers in several recipes is the same runs, so it gets the same
    method, weighting and flags everywhere (and the sweep can share them)."""
    seen = {}
    for recipe in loaded.values():
        for row in recipe.rows:
            if row.runnable:
                numbers = tuple(sorted((k, v) for k, v in row.published.items() if k != "delta_m"))
                seen.setdefault(numbers, {})[f"{recipe.name}/{row.name}"] = (row.method, row.weighting, row.flags)
    shared = {numbers: rows for numbers, rows in seen.items() if len(rows) > 1}
    assert len(shared) >= 5  # MTAN/LS, MGDA, PCGrad, GradDrop, CAGrad ...
    for rows in shared.values():
        assert len(set(rows.values())) == 1, rows


def disagreeing(recipe):
    return {row.name: (published, recomputed) for row, published, recomputed, agrees in recipes.delta_m_check(recipe)
            if not agrees}


def test_published_delta_m_agrees_with_the_published_metrics(loaded):
    """Each printed Δm, ± half its last digit, meets Δm recomputed by evaluation.delta_m from the
    row's and the single-task row's printed metrics, each ± half its last digit; a row that does
    not is listed in the recipe's inconsistent_delta_m."""
    checked = 0
    for recipe in loaded.values():
        checked += len(recipes.delta_m_check(recipe))
        found = disagreeing(recipe)
        unexpected = {name: found[name] for name in set(found) - set(recipe.inconsistent_delta_m)}
        assert not unexpected, (f"{recipe.name}: published Δm (low, high) vs recomputed (low, high), by row: "
                                f"{unexpected}; a transcription error, or record the row in inconsistent_delta_m")
        assert set(recipe.inconsistent_delta_m) <= set(found), \
            f"{recipe.name}: rows recorded as inconsistent agree: {set(recipe.inconsistent_delta_m) - set(found)}"
    assert checked >= 29  # nash_mtl 11, famo 12, cagrad 6: every row that prints Δm is checked


def test_a_wrong_delta_m_is_reported_by_row_and_can_be_recorded(tmp_path):
    wrong = load_recipe(write(tmp_path, delta_m="26.20"), check_flags=False)
    found = disagreeing(wrong)
    assert set(found) == {"ls"}
    (low, high), (rlow, rhigh) = found["ls"]
    assert (low, high) == pytest.approx((26.195, 26.205))
    assert rlow < 22.621 < rhigh < 26.195
    recorded = load_recipe(write(tmp_path, name="recorded", delta_m="26.20", top='inconsistent_delta_m = ["ls"]'),
                           check_flags=False)
    assert recorded.inconsistent_delta_m == ("ls",)
    flipped = load_recipe(write(tmp_path, name="flipped", delta_m="-22.60", top="delta_m_sign = -1",
                                edit=lambda t: t.replace("delta_m = 21.45", "delta_m = -21.45")), check_flags=False)
    assert not disagreeing(flipped)


def test_delta_m_of_nash_mtl_ls_by_hand(loaded):
    """Nash-MTL Table 3, LS against STL (mIoU and PixAcc higher is better: sign −1):
      mIoU    −(75.18 − 74.01)/74.01   = −1.17/74.01  = −0.0158087
      PixAcc  −(93.49 − 93.16)/93.16   = −0.33/93.16  = −0.0035423
      AbsErr  (0.0155 − 0.0125)/0.0125 =  0.0030/0.0125 = 0.2400000
      RelErr  (46.77 − 27.77)/27.77    =  19.00/27.77 =  0.6841916
      Δm = (−0.0158087 − 0.0035423 + 0.2400000 + 0.6841916)/4 × 100 = 0.9048406/4 × 100 = 22.6210
      (printed: 22.60; inside the recomputed interval, whose width the 4-digit AbsErr dominates)."""
    from evaluation.delta_m import delta_m
    recipe = loaded["nash_mtl"]
    row = next(row for row in recipe.rows if row.name == "ls")
    ours = delta_m(recipes.in_repository_units(recipe, row.published),
                   recipes.in_repository_units(recipe, recipe.single_task.published))
    assert ours == pytest.approx(22.6210, abs=1e-4)
    low, high = recipes.delta_m_interval(recipe, row)
    assert low < ours < high and high - low < 0.5
    assert recipes.published_delta_m_interval(recipe, row) == pytest.approx((22.595, 22.605))


def test_units_and_printed_digits(loaded):
    recipe = loaded["nash_mtl"]
    assert recipes.in_repository_units(recipe, recipe.single_task.published) == pytest.approx(
        {"miou": 0.7401, "pix_acc": 0.9316, "abs_err": 0.0125, "rel_err": 27.77})
    assert recipes.in_repository_units(recipe, {"delta_m": 6.82}) == {"delta_m": 6.82}
    dwa = next(row for row in recipe.rows if row.name == "dwa")
    assert dwa.published_text["abs_err"] == "0.0160"  # tomllib alone reads 0.016
    assert [recipes.half_unit(t) for t in ("93.16", "118.5", "0.0160", "7")] == pytest.approx(
        [0.005, 0.05, 0.00005, 0.5])
    assert recipes.recipe_path("famo").name == "famo.toml"
    assert str(recipes.recipe_path("elsewhere/famo.toml")) == "elsewhere/famo.toml"


BAD = {
    "missing field": (dict(edit=lambda t: t.replace('title = "a test table"\n', "")), "title"),
    "unknown metric key": (dict(edit=lambda t: t.replace("miou = 75.18", "accuracy = 75.18")),
                           "rows[0].published.accuracy"),
    "duplicate row name": (dict(second="ls"), "rows[1].name"),
    "owned flag": (dict(flags='["--seed", "3"]'), "rows[0].flags"),
    "abbreviated owned flag": (dict(flags='["--see=3"]'), "rows[0].flags"),
    "unknown flag": (dict(flags='["--no-such-flag"]'), "rows[0].flags"),
    "bad flag value": (dict(flags='["--lr", "-1"]'), "rows[0].flags"),
    "flag of another weighting": (dict(flags='["--uw-init", "0"]'), "rows[0].flags"),
    "zero unit": (dict(edit=lambda t: t.replace("miou = 100", "miou = 0")), "units.miou"),
    "unit missing": (dict(edit=lambda t: t.replace("rel_err = 1\n", "", 1)), "units.rel_err"),
    "unknown unit": (dict(edit=lambda t: t.replace("delta_m = 1\n", "delta_m = 1\nmae = 1\n", 1)), "units.mae"),
    "name not the stem": (dict(edit=lambda t: t.replace('name = "table"', 'name = "other"')), "name"),
    "no evaluation_epochs": (dict(edit=lambda t: t.replace("evaluation_epochs = 1\n", "")),
                             "protocol.evaluation_epochs"),
    "Δm in the single-task row": (dict(edit=lambda t: t.replace("rel_err = 27.77 }", "rel_err = 27.77, delta_m = 0 }")),
                                  "single_task.published.delta_m"),
    "published not an inline table": (dict(edit=lambda t: t.replace(
        "published = { miou = 75.24, pix_acc = 93.52, abs_err = 0.0160, rel_err = 44.37, delta_m = 21.45 }",
        "published.miou = 75.24\npublished.pix_acc = 93.52")), "rows[1].published"),
    "number not as printed": (dict(delta_m="2.26e1"), "rows[0].published.delta_m"),
    "inconsistent names no row": (dict(top='inconsistent_delta_m = ["nope"]'), "inconsistent_delta_m"),
    "unknown method": (dict(edit=lambda t: t.replace('method = "adam"\nweighting = "ew"',
                                                     'method = "adamw"\nweighting = "ew"')), "rows[0].method"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_schema_errors_name_the_file_and_the_field(tmp_path, case):
    kwargs, field = BAD[case]
    path = write(tmp_path, **kwargs)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    message = str(error.value)
    assert str(path) in message and f": {field}" in message, message


def test_a_missing_recipe_names_the_known_ones(tmp_path):
    with pytest.raises(RecipeError, match="known recipes: adatask"):
        load_recipe(tmp_path / "absent.toml")


def test_reading_a_recipe_needs_no_torch():
    code = ("import sys; from evaluation.recipe import load_recipe, recipe_names; "
            "[load_recipe(n, check_flags=False) for n in recipe_names()]; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=recipes.REPOSITORY)
