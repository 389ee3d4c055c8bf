"""AU / rAU task dominance (docs/methods.md, "AU and rAU"): Δ_k against its definition for every optimizer."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import build_model
from optim import OPTIMIZERS, AdagradWithAdaTask, AdamWithAdaTask, AdaTaskOptimizer, RMSpropWithAdaTask
from optim.dominance import CSV_FIELDS, DominanceTracker, csv_rows, write_csv
from tasks import build_tasks

# these tests seed or draw from the global RNGs (torch.manual_seed, layer initialisation): given back after each
pytestmark = pytest.mark.usefixtures("seeded_and_restored")

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


@pytest.mark.parametrize("tasks", [("semantic", "depth"), ("semantic", "instance", "depth")])
def test_default_order_is_the_models_shared_parameters(tasks):
    """task_grads follow model.shared_parameters(); shared_layers() lists them in another order."""
    model = build_model("mtan", build_tasks(tasks), width_mult=0.0625)
    shared = model.shared_parameters()
    assert [id(p) for _, ps in model.shared_layers() for p in ps] != [id(p) for p in shared]
    for method in ("adam", "adam_with_adatask"):
        optimizer = OPTIMIZERS[method](shared, model.task_specific_parameters(), 1e-3)
        tracker = DominanceTracker(optimizer, model.shared_layers(), len(tasks))
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


# AU per task summed over each parameter's elements after `golden_run`, as the tracker computed
# it before it asked the optimizer for Δ_k (optim/dominance.py at b677ecf, which re-derived
# each optimizer's step maths itself).
GOLDEN_AU = {
    "adam_with_adatask": [[8.358693776244763e-06, 7.253132480400382e-06, 6.608840067201527e-06],
                          [5.39442989975214e-05, 4.490623905439861e-05, 4.706912659457885e-05]],
    "rmsprop_with_adatask": [[0.0006570950499735773, 0.0006031793309375644, 0.0007046765531413257],
                             [4.458271723706275e-05, 5.418506407295354e-05, 5.4643409384880215e-05]],
    "adagrad_with_adatask": [[6.488387043646071e-06, 5.972130566078704e-06, 6.972372830205131e-06],
                             [4.3933472625212744e-05, 5.3729389037471265e-05, 5.3864008805248886e-05]],
    "adam": [[1.5058034819048771e-09, 3.3255489029215823e-07, 6.682638286292786e-06],
             [1.2595604914622527e-07, 1.0613886843202636e-05, 7.351440581260249e-05]],
    "rmsprop": [[2.1635032965150458e-07, 2.8614649636438116e-05, 0.000665276893414557],
                [1.2687111450304656e-07, 1.5240584616549313e-05, 6.833484076196328e-05]],
    "adagrad": [[2.1316759468703594e-09, 2.847945381745376e-07, 6.579066393896937e-06],
                [1.2568587237637985e-07, 1.5081698620633688e-05, 6.742237019352615e-05]],
    "sgd": [[2.4937926923485065e-07, 2.177614987886045e-05, 0.0028154179453849792],
            [0.00025728257605805993, 0.021944338455796242, 1.887081503868103]],
}


def golden_optimizer(method, params):
    """Two param groups with their own lr; decay, l2 under AdaTask Adam, decoupled under RMSprop."""
    groups = [{"params": params[:1], "lr": 2e-3}, {"params": params[1:]}]
    return {
        "adam_with_adatask": lambda: AdamWithAdaTask(groups, num_tasks=3, lr=1e-2, weight_decay=0.1,
                                                     weight_decay_mode="l2"),
        "rmsprop_with_adatask": lambda: RMSpropWithAdaTask(groups, num_tasks=3, lr=1e-3, weight_decay=0.1),
        "adagrad_with_adatask": lambda: AdagradWithAdaTask(groups, num_tasks=3, lr=1e-2),
        "adam": lambda: torch.optim.Adam(groups, lr=1e-2), "rmsprop": lambda: torch.optim.RMSprop(groups, lr=1e-3),
        "adagrad": lambda: torch.optim.Adagrad(groups, lr=1e-2), "sgd": lambda: torch.optim.SGD(groups, lr=1e-1),
    }[method]()


def golden_run(method, steps=10):
    """K = 3 tasks on gradient scales 0.1, 1, 10, each missing a parameter now and then."""
    gen = torch.Generator().manual_seed(7)
    params = [torch.nn.Parameter(torch.randn(3, 4, generator=gen, dtype=torch.float64)),
              torch.nn.Parameter(torch.randn(4, generator=gen, dtype=torch.float64))]
    optimizer = golden_optimizer(method, params)
    tracker = DominanceTracker(optimizer, layers(params), 3, beta=0.9)
    for step in range(steps):
        task_grads = [[None if (step + k + i) % 5 == 0 else
                       torch.randn(p.shape, generator=gen, dtype=torch.float64) * 10.0 ** (k - 1)
                       for i, p in enumerate(params)] for k in range(3)]
        if isinstance(optimizer, AdaTaskOptimizer):
            optimizer.step(task_grads=task_grads)
        else:
            for i, p in enumerate(params):
                reached = [g[i] for g in task_grads if g[i] is not None]
                p.grad = sum(reached) if reached else None
            optimizer.step()
        tracker.update(task_grads)
    return params, optimizer, tracker


@pytest.mark.parametrize("method", GOLDEN_AU)
def test_au_is_what_it_was_before_the_optimizers_gave_their_task_updates(method):
    _, _, tracker = golden_run(method)
    au = [[float(a[k].sum()) for k in range(3)] for a in tracker.au]
    for mine, golden in zip(au, GOLDEN_AU[method]):
        assert mine == pytest.approx(golden, rel=1e-6, abs=0)


@pytest.mark.parametrize("method", GOLDEN_AU)
def test_three_tasks(method):
    """K = 3: Δ_k sum to the step (less the decoupled decay, which only the AdaTask RMSprop
    here has), and every element's rAU is a distribution over the three tasks."""
    params, optimizer, tracker = golden_run(method, steps=9)
    before = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(8)
    task_grads = random_task_grads(params, scales=(0.1, 1.0, 10.0), gen=gen)
    if isinstance(optimizer, AdaTaskOptimizer):
        optimizer.step(task_grads=task_grads)
    else:
        plain_step(optimizer, params, task_grads)
    tracker.update(task_grads)
    deltas = tracker.task_steps(task_grads)
    for i, (p, b, group) in enumerate(zip(params, before, optimizer.param_groups)):
        decayed = b * (1 - group["lr"] * group["weight_decay"]) if method == "rmsprop_with_adatask" else b
        torch.testing.assert_close(sum(d[i] for d in deltas), p.detach() - decayed, rtol=1e-9, atol=1e-14)
    rows = tracker.layer_summary()
    assert [(r["layer"], r["task"]) for r in rows] == [(name, k) for name in ("layer0", "layer1") for k in range(3)]
    for layer in range(2):
        assert sum(r["mean_rau"] for r in rows if r["layer_index"] == layer) == pytest.approx(1.0)
    if method == "adam":
        for p, m in zip(params, tracker.first_moments):
            torch.testing.assert_close(m.sum(0), optimizer.state[p]["exp_avg"])


class PerTaskMomentum(AdaTaskOptimizer):
    """A base that exists only in this test: heavy-ball momentum kept per task, buf_k ←
    μ·buf_k + g_k and θ ← θ − η·Σ_k buf_k; task k's part is torch.optim.SGD(momentum=μ) fed g_k.
    Its step reads the buffer only, so l2 decay (folded into the buffer) is tracked too."""

    state_names = ("momentum_buffer",)
    linear_state_names = ("momentum_buffer",)
    update_reads_grads = False

    def __init__(self, params, num_tasks, lr=0.1, momentum=0.9, weight_decay=0.0, weight_decay_mode="decoupled"):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(params, num_tasks=num_tasks, defaults=defaults)

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        for g, buf in zip(grads, states["momentum_buffer"]):
            buf.mul_(group["momentum"]).add_(g)

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        for p, buf in zip(params, states["momentum_buffer"]):
            p.add_(buf, alpha=-group["lr"])


class PerTaskSignSGD(AdaTaskOptimizer):
    """Another test-only base, without state: θ ← θ − η·Σ_k sign(g_k). Its step reads the
    gradients, so under l2 decay its task updates cannot be recovered after the step."""

    def __init__(self, params, num_tasks, lr=0.01, weight_decay=0.0, weight_decay_mode="decoupled"):
        super().__init__(params, num_tasks=num_tasks,
                         defaults=dict(lr=lr, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode))

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        pass

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        for p, g in zip(params, grads):
            p.add_(g.sign(), alpha=-group["lr"])


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_a_new_base_is_tracked_without_changing_the_tracker(num_tasks):
    params = shared_params()
    optimizer = PerTaskMomentum(params, num_tasks)
    tracker = DominanceTracker(optimizer, layers(params), num_tasks, beta=0.9)
    independent = [[torch.nn.Parameter(p.detach().clone()) for p in params] for _ in range(num_tasks)]
    refs = [torch.optim.SGD(ps, lr=0.1, momentum=0.9) for ps in independent]
    gen = torch.Generator().manual_seed(9)
    for step in range(4):
        task_grads = random_task_grads(params, scales=(1.0, 10.0, 100.0)[:num_tasks], gen=gen)
        optimizer.step(task_grads=task_grads)
        tracker.update(task_grads)
        deltas = tracker.task_steps(task_grads)
        for k, (ref, ps) in enumerate(zip(refs, independent)):
            before = [q.detach().clone() for q in ps]
            plain_step(ref, ps, [task_grads[k]])
            for d, q, b, au in zip(deltas[k], ps, before, tracker.au):
                torch.testing.assert_close(d, q.detach() - b, rtol=1e-10, atol=1e-14)
                if step == 0:
                    torch.testing.assert_close(au[k], (0.1 * d**2).float())
    assert tracker.layer_summary()[-1]["mean_rau"] > 0.9  # the largest task dominates momentum SGD


def test_a_new_base_whose_step_reads_its_state_is_tracked_under_l2_decay():
    params = shared_params()
    optimizer = PerTaskMomentum(params, 3, weight_decay=0.01, weight_decay_mode="l2")
    tracker = DominanceTracker(optimizer, layers(params), 3)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        task_grads = random_task_grads(params, scales=(1.0, 10.0, 100.0), gen=gen)
        before = [p.detach().clone() for p in params]
        optimizer.step(task_grads=task_grads)
        tracker.update(task_grads)
        deltas = tracker.task_steps(task_grads)
        for i, (p, b) in enumerate(zip(params, before)):
            torch.testing.assert_close(sum(d[i] for d in deltas), p.detach() - b, rtol=1e-10, atol=1e-14)


def test_a_new_base_whose_step_reads_the_gradient():
    params = shared_params()
    optimizer = PerTaskSignSGD(params, 3, weight_decay=0.1)
    tracker = DominanceTracker(optimizer, layers(params), 3)
    task_grads = random_task_grads(params, scales=(1.0, 10.0, 100.0))
    optimizer.step(task_grads=task_grads)
    tracker.update(task_grads)
    for delta, grads in zip(tracker.task_steps(task_grads), task_grads):
        for d, g in zip(delta, grads):
            torch.testing.assert_close(d, -0.01 * g.sign())
    rows = tracker.layer_summary()
    assert {round(r["mean_rau"], 6) for r in rows} == {round(1 / 3, 6)}  # sign steps: equal shares
    l2 = PerTaskSignSGD(params, 3, weight_decay=0.1, weight_decay_mode="l2")
    with pytest.raises(ValueError, match="AU tracking under PerTaskSignSGD: .*not l2"):
        DominanceTracker(l2, layers(params), 3)


def test_a_subclass_of_a_base_is_tracked_as_its_base():
    class MyAdam(AdamWithAdaTask):
        pass

    tracked = []
    for cls in (AdamWithAdaTask, MyAdam):
        params = shared_params()
        optimizer = cls(params, num_tasks=2, lr=1e-2)
        tracker = DominanceTracker(optimizer, layers(params), 2)
        gen = torch.Generator().manual_seed(10)
        for _ in range(3):
            task_grads = random_task_grads(params, gen=gen)
            optimizer.step(task_grads=task_grads)
            tracker.update(task_grads)
        tracked.append(tracker.au)
    for a, b in zip(*tracked):
        assert torch.equal(a, b)


def test_the_tracker_and_the_optimizer_agree_on_the_number_of_tasks():
    params = shared_params()
    with pytest.raises(ValueError, match="AU tracking of 3 tasks under AdamWithAdaTask of 2 tasks"):
        DominanceTracker(AdamWithAdaTask(params, num_tasks=2), layers(params), 3)


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
    done = subprocess.run([sys.executable, "-m", "scripts.plot_au", str(adam), str(adatask),
                           "--out", str(out), "--table", str(table), "--task", "semantic"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    text = table.read_text()
    assert "| adam + ew | 2 | 0.450 | 0.100 | 0.450 | 1.000 |" in text
    assert "| adam_with_adatask + ew | 2 | 0.500 | 0.500 | 0.000 | 0.000 |" in text
    assert "![rAU per shared layer](au.png)" in text


def test_plot_au_reports_a_missing_epoch(tmp_path):
    run = fake_run(tmp_path / "adam", "adam", [0.5, 0.5])
    done = subprocess.run([sys.executable, "-m", "scripts.plot_au", str(run), "--out", str(tmp_path / "au.png"),
                           "--epoch", "7"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "no epoch 7" in done.stderr
