"""evaluation.comparison: a reproduced recipe beside its paper (docs/reproduce.md, "The comparison
report"). Fabricated run folders (test_baseline.make_run), no training; the statistics against
hand-computed values."""
import csv
import math
from pathlib import Path

import pytest
from test_baseline import make_run

from evaluation import run_record
from evaluation.comparison import MARK, NOT_COMPARABLE, agreement, estimate, kendall, rule_values, write_comparison
from evaluation.recipe import Recipe, Row
from evaluation.run_record import RunError, read_run
from experiment.flags import setting_definitions

SINGLE_PUBLISHED = {"miou": 74.01, "pix_acc": 93.16, "abs_err": 0.0125, "rel_err": 27.77}
UNITS = {"miou": 100, "pix_acc": 100, "abs_err": 1, "rel_err": 1, "delta_m": 1}
# (seed 0, 1, 2) values of each row's runs, in the repository's units
LS = {"miou": (0.70, 0.72, 0.74), "pix_acc": (0.90, 0.91, 0.92), "abs_err": (0.014, 0.015, 0.016),
      "rel_err": (30.0, 31.0, 32.0)}
PCG = {"miou": (0.73, 0.75), "pix_acc": (0.92, 0.93), "abs_err": (0.013, 0.014), "rel_err": (28.0, 29.0)}
SINGLE = {"miou": (0.74, 0.74, 0.74), "pix_acc": (0.93, 0.93, 0.93), "abs_err": (0.0125, 0.0125, 0.0125),
          "rel_err": (27.0, 27.0, 27.0)}


def row(name, label, method, weighting, flags, printed, note=""):
    """A Row whose published values are given as the paper prints them ("80.00")."""
    return Row(name, label, method, weighting, tuple(flags), method is not None,
               {k: float(v) for k, v in printed.items()}, note, published_text=dict(printed))


def recipe(evaluation="last", epochs=10, rows=None, sign=1):
    rows = rows if rows is not None else (
        row("ls", "LS", "adam", "ew", (),
            {"miou": "80.00", "pix_acc": "91.00", "abs_err": "0.0150", "rel_err": "31.00", "delta_m": "22.60"}),
        row("pcg", "PCGrad", "adam", "pcgrad", (),
            {"miou": "74.00", "pix_acc": "92.50", "abs_err": "0.0135", "rel_err": "28.50", "delta_m": "10.00"}),
        row("xyz", "XYZ", None, None, (), {"miou": "76.00", "delta_m": "5.00"}, note="a method we lack"))
    single = row("single", "STL", "adam", "ew", (), {k: str(v) for k, v in SINGLE_PUBLISHED.items()})
    return Recipe(name="toy", version=2, title="Toy table", source={
        "paper": "A Toy Paper", "authors": "A. Author", "venue": "ICML", "year": 2022, "table": "Table 3",
        "arxiv": "2202.01017"}, protocol={}, flags=(), seeds=(0, 1, 2), evaluation=evaluation,
        evaluation_epochs=epochs if evaluation == "last" else None, units=dict(UNITS), delta_m_sign=sign,
        single_task=single, rows=rows, path=Path("recipes/toy.toml"))


def make_sweep(root, extra=True, **changes):
    """ls-s0..2, pcg-s0..1 (pcg-s2 unfinished), single-{semantic,depth}-s0..2, and an extra run."""
    for i in range(3):
        make_run(root, f"ls-s{i}", {k: v[i] for k, v in LS.items()}, seed=i, **changes)
        make_run(root, f"single-semantic-s{i}", {k: SINGLE[k][i] for k in ("miou", "pix_acc")}, seed=i,
                 tasks=("semantic",))
        make_run(root, f"single-depth-s{i}", {k: SINGLE[k][i] for k in ("abs_err", "rel_err")}, seed=i,
                 tasks=("depth",))
    for i in range(2):
        make_run(root, f"pcg-s{i}", {k: v[i] for k, v in PCG.items()}, seed=i, weighting="pcgrad")
    make_run(root, "pcg-s2", {k: v[0] for k, v in PCG.items()}, seed=2, weighting="pcgrad", finished=False)
    if extra:
        make_run(root, "other-s0", {k: v[0] for k, v in LS.items()}, seed=0)
    return root


def test_estimate_against_hand_computed_values():
    # 0.70, 0.72, 0.74: mean 0.72; s = sqrt((0.02² + 0 + 0.02²) / 2) = 0.02; SE = 0.02 / √3 = 0.0115470;
    # t_{0.975, 2} = 4.302653; half width 4.302653 × 0.0115470 = 0.0496828: [0.670317, 0.769683].
    e = estimate([0.70, 0.72, 0.74], published=0.80)
    assert (e.n, e.mean, e.std, e.se, e.t) == pytest.approx((3, 0.72, 0.02, 0.0115470054, 4.30265273))
    assert (e.low, e.high) == pytest.approx((0.6703172, 0.7696828))
    # (0.80 − 0.72) / 0.0115470 = 6.928203 SE; 0.80 > 0.769683: outside
    assert e.diff_se == pytest.approx(6.9282032) and e.outside
    inside = estimate([0.70, 0.72, 0.74], published=0.75)  # (0.75 − 0.72) / 0.011547 = 2.598076, inside
    assert inside.diff_se == pytest.approx(2.5980762) and not inside.outside
    # two seeds 0.73, 0.75: s = 0.02/√2 = 0.0141421, SE = 0.01, t_{0.975, 1} = 12.706205;
    # mean 0.74 ± 0.127062: [0.612938, 0.867062]
    two = estimate([0.73, 0.75], published=0.74)
    assert (two.se, two.t, two.low, two.high, two.diff_se) == pytest.approx(
        (0.01, 12.7062047, 0.6129380, 0.8670620, 0.0), abs=1e-7)
    one = estimate([0.7], published=0.9)  # n = 1: no std, SE, interval, difference or mark
    assert (one.std, one.se, one.low, one.diff_se, one.outside) == (None, None, None, None, False)


def test_kendall_tau_b_against_hand_computed_values():
    # [1, 2, 3, 4] vs [1, 3, 2, 4]: 5 concordant pairs, 1 discordant of 6: τ = (5 − 1) / 6 = 2/3.
    # Exact two-sided p: permutations of 4 with at most 1 inversion: 1 + 3 = 4 of 24, doubled: 8/24 = 1/3.
    tau, p = kendall([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert tau == pytest.approx(2 / 3) and p == pytest.approx(1 / 3)
    assert "agree in part" in agreement(tau, p, 4) and "p = 0.333" in agreement(tau, p, 4)
    assert kendall([1.0, 2.0], [2.0, 1.0]) == (-1.0, None)  # two rows: τ, no p-value
    assert "disagree" in agreement(-1.0, None, 2)
    assert kendall([1.0], [1.0]) == (None, None) and "undefined" in agreement(None, None, 1)
    # ties: [1, 1, 2] vs [1, 2, 3]: n_c = 2, n_d = 0, ties only in x: 1 pair; τ-b = 2 / √((3 − 1)(3 − 0)) = 0.816497
    assert kendall([1.0, 1.0, 2.0], [1.0, 2.0, 3.0])[0] == pytest.approx(2 / math.sqrt(6))


def known_run(tmp_path):
    """Four epochs (hand-made metrics.jsonl) of a semantic + depth run."""
    tests = [{"miou": 0.1, "pix_acc": 0.6, "abs_err": 0.03, "rel_err": 0.3},
             {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.02, "rel_err": 0.2},
             {"miou": 0.3, "pix_acc": 0.7, "abs_err": 0.01, "rel_err": 0.1},
             {"miou": 0.2, "pix_acc": 0.65, "abs_err": 0.025, "rel_err": 0.25}]
    run_dir = make_run(tmp_path, "ls-s0", tests[-1], epochs=4)
    rows = [{"epoch": i, "lr": 1e-4, "seconds": 1.0, "train": dict(t), "test": dict(t, delta_m=None)}
            for i, t in enumerate(tests)]
    run_record.write_metrics(run_dir, rows)
    run_record.write_json(run_dir / run_record.SUMMARY, run_record.summarize(rows, None, None))
    return read_run(run_dir, setting_definitions())


def test_the_evaluation_rules_on_a_known_metrics_file(tmp_path):
    run, keys = known_run(tmp_path), ("miou", "pix_acc", "abs_err", "rel_err")
    reference = {"miou": 0.5, "pix_acc": 0.8, "abs_err": 0.02, "rel_err": 0.2}
    final, which = rule_values(run, "final", None, keys, reference)
    assert final == {"miou": 0.2, "pix_acc": 0.65, "abs_err": 0.025, "rel_err": 0.25} and which == "epoch 3"
    last2, which = rule_values(run, "last", 2, keys, reference)  # epochs 2 and 3: miou (0.3 + 0.2) / 2
    assert last2 == pytest.approx({"miou": 0.25, "pix_acc": 0.675, "abs_err": 0.0175, "rel_err": 0.175})
    assert which == "epochs 2–3"
    last10, which = rule_values(run, "last", 10, keys, reference)  # all 4: miou (0.1 + 0.5 + 0.3 + 0.2) / 4
    assert last10["miou"] == pytest.approx(0.275) and "4 < 10 epochs" in which
    # Δm against the reference, per epoch: e0 (+0.8 + 0.25 + 0.5 + 0.5) / 4 = +51.25 %; e1 0; e2 (+0.4 + 0.125
    # − 0.5 − 0.5) / 4 = −11.875 %; e3 (+0.6 + 0.1875 + 0.25 + 0.25) / 4 = +32.19 %: best_test_epoch 2
    best, which = rule_values(run, "best", None, keys, reference)
    assert best == {"miou": 0.3, "pix_acc": 0.7, "abs_err": 0.01, "rel_err": 0.1} and which == "best_test_epoch 2"


def read_csv(path):
    with open(path) as f:
        return {(line["row"], line["metric"]): line for line in csv.DictReader(f)}


def test_the_report_of_a_sweep(tmp_path):
    sweep = make_sweep(tmp_path / "toy")
    paths = write_comparison(recipe(), sweep, sweep / "results")
    assert {p.name for p in paths.values()} == {"comparison.md", "comparison.csv", "comparison.png"}
    assert all(p.stat().st_size > 0 for p in paths.values())
    md, lines = paths["md"].read_text(), read_csv(paths["csv"])
    ls = lines[("ls", "miou")]
    # in percent (× 100): mean 72, std 2, SE 1.154701, t 4.302653, [67.03172, 76.96828]; published 80 outside,
    # (80 − 72) / 1.154701 = 6.928203 SE
    assert [float(ls[k]) for k in ("published", "n", "mean", "std", "se", "t", "low", "high", "diff_se")] == \
        pytest.approx([80.0, 3, 72.0, 2.0, 1.1547005, 4.3026527, 67.031717, 76.968283, 6.9282032])
    assert ls["outside"] == "True" and ls["seeds"] == "0 1 2"
    assert lines[("ls", "pix_acc")]["outside"] == "False"  # 91.00 = our mean
    assert lines[("pcg", "miou")]["n"] == "2"  # pcg-s2 is unfinished: listed, not averaged
    assert lines[("xyz", "miou")]["published"] == "76.0" and lines[("xyz", "miou")]["n"] == ""
    assert float(lines[("single", "miou")]["mean"]) == pytest.approx(74.0)
    assert "| LS | 80.00 | 72.000 ± 2.000 | 3 | 1.155 | [67.032, 76.968] | +6.93 | ✗ |" in md
    # Δm of ls seed 0 against the published single-task row (0.7401, 0.9316, 0.0125, 27.77): by hand
    published_st = {"miou": 0.7401, "pix_acc": 0.9316, "abs_err": 0.0125, "rel_err": 27.77}
    signs = {"miou": -1, "pix_acc": -1, "abs_err": 1, "rel_err": 1}
    by_hand = [sum(signs[k] * (LS[k][i] - published_st[k]) / published_st[k] for k in signs) / 4 * 100
               for i in range(3)]
    assert float(lines[("ls", "delta_m_published")]["mean"]) == pytest.approx(sum(by_hand) / 3)
    # against ours: the single-task runs' means 0.74, 0.93, 0.0125, 27.0
    ours_st = {"miou": 0.74, "pix_acc": 0.93, "abs_err": 0.0125, "rel_err": 27.0}
    ours = [sum(signs[k] * (LS[k][i] - ours_st[k]) / ours_st[k] for k in signs) / 4 * 100 for i in range(3)]
    assert float(lines[("ls", "delta_m_single_task")]["mean"]) == pytest.approx(sum(ours) / 3)
    assert lines[("ls", "delta_m_single_task")]["published"] == "22.6"
    # the paper ranks xyz (5), pcg (10), ls (22.6); ours: pcg better than ls too, τ-b over the 2 runnable rows = 1
    assert "| 1 | XYZ | +5.00 | not runnable |" in md
    assert "Kendall's τ-b = 1.000 over 2 runnable rows (no p-value with fewer than 3 rows): the rankings agree" in md
    for text in ("Comparison: toy (recipe version 2)", "A Toy Paper", "ICML 2022", "Table 3", "arxiv 2202.01017",
                 "last: per run the mean of the test metrics of its last 10 epochs",
                 ("Seeds planned: [0, 1, 2] for each of 2 runnable rows and 2 single-task baselines (12 runs); "
                  "finished and used: 11")):
        assert text in md
    runs_not_used = md.split("## Runs not used")[1]
    assert "| other-s0 | finished, not in the recipe |" in runs_not_used
    assert "| pcg-s2 | unfinished" in runs_not_used
    assert "| PCGrad | 0 1 2 | 0 1 | 2 |" in md  # planned, found, missing
    assert NOT_COMPARABLE not in md


def test_a_synthetic_rehearsal_labels_every_published_column_and_draws_no_marks(tmp_path):
    sweep = make_sweep(tmp_path / "toy", extra=False)
    paths = write_comparison(recipe(), sweep, tmp_path / "out", synthetic=True)
    md = paths["md"].read_text()
    assert f'every published column is labelled "{NOT_COMPARABLE}"' in md
    assert md.count(f"| published ({NOT_COMPARABLE}) |") == 5  # four metrics and Δm
    assert f"(published − mean)/SE ({NOT_COMPARABLE})" in md and f"paper rank ({NOT_COMPARABLE})" in md
    assert MARK not in md.replace(f"{MARK}: the published value", "")  # only the legend names the mark
    assert read_csv(paths["csv"])[("ls", "miou")]["outside"] == ""


def test_runs_of_different_settings_are_never_averaged(tmp_path):
    sweep = make_sweep(tmp_path / "toy", extra=False)
    make_run(sweep, "other-s1", {k: v[1] for k, v in LS.items()}, seed=1, lr=1e-3)  # not the recipe's: listed
    md = write_comparison(recipe(), sweep, sweep / "results")["md"].read_text()
    assert "| other-s1 | finished, not in the recipe |" in md
    # a row of the recipe whose run has another lr: the runs used no longer share a setup, refused naming lr
    rows = (*recipe().rows, row("lr", "LR", "adam", "ew", (), {"miou": "70.00"}))
    (sweep / "other-s1").rename(sweep / "lr-s1")
    with pytest.raises(RunError, match=r"(?s)differ in settings.*lr: 0\.0001 .* vs 0\.001"):
        write_comparison(recipe(rows=rows), sweep, sweep / "results")


def test_a_row_whose_runs_differ_in_a_method_option_is_not_averaged(tmp_path):
    sweep = make_sweep(tmp_path / "toy", extra=False)
    (sweep / "pcg-s2").rename(tmp_path / "gone")
    make_run(sweep, "pcg-s2", {k: v[0] for k, v in PCG.items()}, seed=2, weighting="pcgrad", pcgrad_eps=1e-8)
    paths = write_comparison(recipe(), sweep, sweep / "results")
    md = paths["md"].read_text()
    refused = md.split("## Rows not averaged")[1].split("##")[0]
    assert "**PCGrad**" in refused and "method options" in refused and "pcgrad_eps" in refused
    assert read_csv(paths["csv"])[("pcg", "miou")]["n"] == ""


def test_a_run_without_its_rows_flags_is_not_used(tmp_path):
    sweep = make_sweep(tmp_path / "toy", extra=False)
    rows = list(recipe().rows)
    rows[1] = row("pcg", "PCGrad", "adam", "pcgrad", ("--pcgrad-eps", "1e-8"), {"miou": "74.00"})
    paths = write_comparison(recipe(rows=tuple(rows)), sweep, sweep / "results")
    md = paths["md"].read_text()
    assert "| pcg-s0 | not used: not the recipe's flags |" in md and "pcgrad_eps" in md
    assert read_csv(paths["csv"])[("pcg", "miou")]["n"] == ""


@pytest.mark.parametrize("rule, expected", [("final", 0.72), ("best", 0.72)])
def test_final_and_best_rules_in_the_report(tmp_path, rule, expected):
    # make_run's last 10 epochs hold the given values, the earlier ones are worse: final = best = last10
    sweep = make_sweep(tmp_path / "toy", extra=False)
    md = write_comparison(recipe(evaluation=rule), sweep, sweep / "results")["md"].read_text()
    assert ("best_test_epoch" in md) == (rule == "best")
    assert f"| LS | 80.00 | {expected * 100:.3f} ± 2.000 | 3 |" in md
    assert ("| ls-s0 | best_test_epoch 2 |" in md) if rule == "best" else ("| ls-s0 | epoch 11 |" in md)


def test_a_recipe_without_a_published_single_task_row(tmp_path):
    # the AdaTask recipe's case: no published STL row nor Δm; Δm against our single-task runs only
    sweep = make_sweep(tmp_path / "toy", extra=False)
    rows = tuple(row(r.name, r.label, r.method, r.weighting, r.flags,
                     {k: v for k, v in r.published_text.items() if k != "delta_m"}) for r in recipe().rows)
    bare = recipe(rows=rows)
    bare = Recipe(**{**bare.__dict__, "single_task": row("single", "STL (not found)", "adam", "ew", (), {})})
    paths = write_comparison(bare, sweep, sweep / "results")
    lines = read_csv(paths["csv"])
    assert lines[("ls", "delta_m_published")]["n"] == "" and lines[("ls", "delta_m_single_task")]["n"] == "3"
    assert "Kendall's τ is undefined over 0 rows" in paths["md"].read_text()


def test_the_command_line_reports_a_refusal_and_exits_2(tmp_path, capsys, monkeypatch):
    from evaluation.comparison import main

    monkeypatch.setattr("evaluation.recipe.load_recipe", lambda name: recipe())  # the toy, not a file of recipes/
    make_run(tmp_path, "ls-s0", {k: v[0] for k, v in LS.items()}, seed=0)
    make_run(tmp_path, "ls-s1", {k: v[1] for k, v in LS.items()}, seed=1, lr=1e-3)
    assert main(["toy", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lr: 0.0001 (ls-s0) vs 0.001 (ls-s1)" in err
    assert not (tmp_path / "results" / "comparison.md").exists()
