"""AU / rAU task dominance (METHODS §3): Δ_k against its definition for every optimizer."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import build_model
from optim import OPTIMIZERS, AdagradWithAdaTask, AdamWithAdaTask, RMSpropWithAdaTask
from optim.dominance import CSV_FIELDS, DominanceTracker, csv_rows, write_csv

REPO = Path(__file__).resolve().parent.parent
ADATASK = {
    "adam": (AdamWithAdaTask, torch.optim.Adam, dict(lr=1e-2)),
    "rmsprop": (RMSpropWithAdaTask, torch.optim.RMSprop, dict(lr=1e-3)),
    "adagrad": (AdagradWithAdaTask, torch.optim.Adagrad, dict(lr=1e-2)),
}
PLAIN = {"adam": (torch.optim.Adam, 1e-2), "rmsprop": (torch.optim.RMSprop, 1e-3),
         "adagrad": (torch.optim.Adagrad, 1e-2), "sgd": (torch.optim.SGD, 1e-1)}


def shared_params(dtype=torch.float64):
    """Two tiny 'layers' (weight, bias), so alignment and grouping are exercised."""
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 4, dtype=dtype)), torch.nn.Parameter(torch.randn(4, dtype=dtype))]


def layers(params):
    return [("layer0", params[:1]), ("layer1", params[1:])]


def random_task_grads(params, scales=(1.0, 1.0), gen=None):
    return [[s * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] for s in scales]


def plain_step(optimizer, params, task_grads):
    for i, p in enumerate(params):
        p.grad = sum(g[i] for g in task_grads)
    optimizer.step()


@pytest.mark.parametrize("base", ADATASK)
def test_adatask_task_steps_are_independent_optimizers(base):
    ada_cls, torch_cls, kw = ADATASK[base]
    params = shared_params()
    ada = ada_cls(params, num_tasks=2, **kw)
    tracker = DominanceTracker(ada, layers(params), 2, beta=0.9)
    independent = [[torch.nn.Parameter(p.detach().clone()) for p in params] for _ in range(2)]
    refs = [torch_cls(ps, **kw) for ps in independent]
    gen = torch.Generator().manual_seed(1)
    for step in range(4):
        task_grads = random_task_grads(params, gen=gen)
        ada.step(task_grads=task_grads)
        tracker.update(task_grads)
        deltas = tracker.task_steps(task_grads)
        for k, (ref, ps) in enumerate(zip(refs, independent)):
            before = [p.detach().clone() for p in ps]
            plain_step(ref, ps, [task_grads[k]])
            for d, p, b in zip(deltas[k], ps, before):
                torch.testing.assert_close(d, p.detach() - b, rtol=1e-10, atol=1e-14)
            if step == 0:  # AU starts at zero: one step leaves (1 − β) Δ_k²
                for au, d in zip(tracker.au, deltas[k]):
                    torch.testing.assert_close(au[k], (0.1 * d**2).float())


@pytest.mark.parametrize("base", PLAIN)
def test_plain_task_steps_sum_to_the_actual_step(base):
    torch_cls, lr = PLAIN[base]
    params = shared_params()
    optimizer = torch_cls(params, lr=lr)
    tracker = DominanceTracker(optimizer, layers(params), 2)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        task_grads = random_task_grads(params, scales=(1.0, 3.0), gen=gen)
        before = [p.detach().clone() for p in params]
        plain_step(optimizer, params, task_grads)
        tracker.update(task_grads)
        deltas = tracker.task_steps(task_grads)
        for i, p in enumerate(params):
            torch.testing.assert_close(deltas[0][i] + deltas[1][i], p.detach() - before[i], rtol=1e-9, atol=1e-14)
        if base == "adam":  # m is linear: the per-task first moments sum to Adam's
            for p, m in zip(params, tracker.first_moments):
                torch.testing.assert_close(m.sum(0), optimizer.state[p]["exp_avg"])


def test_a_task_not_reaching_a_parameter_counts_as_zero():
    params = shared_params()
    optimizer = torch.optim.RMSprop(params, lr=1e-3)
    tracker = DominanceTracker(optimizer, layers(params), 2)
    task_grads = random_task_grads(params)
    task_grads[1][0] = None
    task_grads[0][1] = task_grads[1][1] = None  # no task reaches the bias: not stepped
    plain_step(optimizer, params[:1], [task_grads[0][:1]])
    tracker.update(task_grads)
    assert tracker.au[0][0].gt(0).all() and tracker.au[0][1].eq(0).all()
    assert tracker.au[1].eq(0).all()


def toy_rau(adatask, steps=200):
    """Two tasks with noisy gradients on one shared vector, task 1's 100x larger."""
    params = [torch.nn.Parameter(torch.zeros(64))]
    optimizer = AdamWithAdaTask(params, num_tasks=2, lr=1e-3) if adatask else torch.optim.Adam(params, lr=1e-3)
    tracker = DominanceTracker(optimizer, [("w", params)], 2, beta=0.99)
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        task_grads = random_task_grads(params, scales=(1.0, 100.0), gen=gen)
        if adatask:
            optimizer.step(task_grads=task_grads)
        else:
            plain_step(optimizer, params, task_grads)
        tracker.update(task_grads)
    return tracker


def test_rau_is_a_distribution_over_tasks():
    rows = toy_rau(adatask=True, steps=20).layer_summary()
    assert all(0 <= r[q] <= 1 for r in rows for q in ("mean_rau", "q10", "q50", "q90", "dominated"))
    assert sum(r["mean_rau"] for r in rows) == pytest.approx(1.0)
    assert sum(r["q50"] for r in rows) == pytest.approx(1.0, abs=1e-6)  # K = 2: rAU_1 = 1 − rAU_0


def test_rau_of_an_untouched_element_is_one_over_k():
    params = shared_params()
    tracker = DominanceTracker(torch.optim.SGD(params, lr=0.1), layers(params), 4)
    assert {r["mean_rau"] for r in tracker.layer_summary()} == {0.25}


def test_the_larger_task_dominates_adam_but_not_adatask():
    """The paper's finding on a toy problem."""
    adam, adatask = (toy_rau(adatask).layer_summary() for adatask in (False, True))
    assert adam[1]["mean_rau"] > 0.99 and adam[1]["dominated"] == 1.0
    assert adatask[1]["mean_rau"] == pytest.approx(0.5, abs=0.05) and adatask[1]["dominated"] < 0.2


def test_layer_summary_rows_in_layer_order():
    params = shared_params()
    optimizer = torch.optim.Adam(params)
    tracker = DominanceTracker(optimizer, layers(params), 2, dominated_threshold=0.6)
    task_grads = random_task_grads(params, scales=(1.0, 10.0))
    plain_step(optimizer, params, task_grads)
    tracker.update(task_grads)
    rows = tracker.layer_summary()
    assert [(r["layer_index"], r["layer"], r["task"]) for r in rows] == [
        (0, "layer0", 0), (0, "layer0", 1), (1, "layer1", 0), (1, "layer1", 1)]
    assert set(rows[0]) == set(CSV_FIELDS) - {"epoch"}
    rau = tracker.au[1][1] / tracker.au[1].sum(0)
    assert rows[3]["dominated"] == pytest.approx(float((rau > 0.6).double().mean()))
    assert rows[3]["q50"] == pytest.approx(float(torch.quantile(rau.float(), 0.5)))


def test_default_order_is_the_models_shared_parameters():
    """task_grads follow model.shared_parameters(); shared_layers() lists them in another order."""
    model = build_model("mtan", width_mult=0.0625)
    shared = model.shared_parameters()
    assert [id(p) for _, ps in model.shared_layers() for p in ps] != [id(p) for p in shared]
    for method in ("adam", "adam_with_adatask"):
        optimizer = OPTIMIZERS[method](shared, model.task_specific_parameters(), 1e-3)
        tracker = DominanceTracker(optimizer, model.shared_layers(), 2)
        assert [id(p) for p in tracker.params] == [id(p) for p in shared]


@pytest.mark.parametrize("optimizer", [
    lambda ps: torch.optim.AdamW(ps), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: torch.optim.Adam(ps, weight_decay=1e-4), lambda ps: torch.optim.RMSprop(ps, centered=True),
    lambda ps: RMSpropWithAdaTask(ps, num_tasks=2, weight_decay=1e-4, weight_decay_mode="l2"),
])
def test_unsupported_optimizers_are_refused(optimizer):
    params = shared_params()
    with pytest.raises(ValueError, match="AU tracking"):
        DominanceTracker(optimizer(params), layers(params), 2)


def test_state_dict_round_trip(tmp_path):
    """Save after 3 steps, load with weights_only into fresh objects, continue: identical."""
    gen = torch.Generator().manual_seed(4)
    all_grads = [random_task_grads(shared_params(), gen=gen) for _ in range(5)]

    def fresh():
        params = shared_params()
        optimizer = torch.optim.Adam(params)
        return params, optimizer, DominanceTracker(optimizer, layers(params), 2)

    def run(params, optimizer, tracker, steps):
        for task_grads in steps:
            plain_step(optimizer, params, task_grads)
            tracker.update(task_grads)

    reference = fresh()
    run(*reference, all_grads)
    first = fresh()
    run(*first, all_grads[:3])
    torch.save({"params": [p.detach() for p in first[0]], "optimizer": first[1].state_dict(),
                "au": first[2].state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    params, optimizer, tracker = fresh()
    for p, saved in zip(params, state["params"]):
        p.data.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    tracker.load_state_dict(state["au"])
    run(params, optimizer, tracker, all_grads[3:])
    for a, b in zip(reference[2].au + reference[2].first_moments, tracker.au + tracker.first_moments):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="beta"):
        DominanceTracker(optimizer, layers(params), 2, beta=0.9).load_state_dict(state["au"])


def test_write_csv_writes_one_block_per_epoch(tmp_path):
    rows = [{"layer_index": 0, "layer": "enc", "task": k, "mean_rau": 0.5, "dominated": 0.0, "q10": 0.4,
             "q50": 0.5, "q90": 0.6} for k in range(2)]
    path = tmp_path / "au.csv"
    with open(path, "w") as f:
        write_csv(f, csv_rows(rows, 1, ["semantic", "depth"]) + csv_rows(rows, 2, ["semantic", "depth"]))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_FIELDS) and len(lines) == 5
    assert lines[1] == "1,0,enc,semantic,0.5,0,0.4,0.5,0.6" and lines[4].startswith("2,0,enc,depth,")


def fake_run(folder, method, semantic_rau):
    """A run folder with config.json and an au.csv of two epochs over eight layers."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"settings": {"method": method, "weighting": "ew"}}))
    rows = []
    for epoch in (1, 2):
        summary = []
        for i, r in enumerate(semantic_rau):
            for k, value in enumerate((r, 1 - r)):
                summary.append({"layer_index": i, "layer": f"layer{i}", "task": k, "mean_rau": value,
                                "dominated": float(value > 0.9), "q10": max(value - 0.1, 0.0), "q50": value,
                                "q90": min(value + 0.1, 1.0)})
        rows += csv_rows(summary, epoch, ["semantic", "depth"])
    with open(folder / "au.csv", "w") as f:
        write_csv(f, rows)
    return folder


def test_plot_au_writes_figure_and_table(tmp_path):
    adam = fake_run(tmp_path / "adam", "adam", [0.5, 0.5, 0.4, 0.4, 0.2, 0.1, 0.05, 0.05])
    adatask = fake_run(tmp_path / "adatask", "adam_with_adatask", [0.5] * 8)
    out, table = tmp_path / "results" / "au.png", tmp_path / "results" / "au.md"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_au.py"), str(adam), str(adatask),
                           "--out", str(out), "--table", str(table), "--task", "semantic"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    text = table.read_text()
    assert "| adam + ew | 2 | 0.450 | 0.100 | 0.450 | 1.000 |" in text
    assert "| adam_with_adatask + ew | 2 | 0.500 | 0.500 | 0.000 | 0.000 |" in text
    assert "![rAU per shared layer](au.png)" in text


def test_plot_au_reports_a_missing_epoch(tmp_path):
    run = fake_run(tmp_path / "adam", "adam", [0.5, 0.5])
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_au.py"), str(run), "--out",
                           str(tmp_path / "au.png"), "--epoch", "7"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "no epoch 7" in done.stderr
