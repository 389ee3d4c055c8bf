"""SegNet-MTAN and SegNet split: size, outputs, shared/task-specific split, gradients."""
import pytest
import torch
from torch import nn

from models import MODELS, build_model, check_image_size
from models.blocks import scaled_filters
from tasks import DEFAULT_TASKS, TaskSettings, build_tasks
from tasks.depth import DepthTask
from tasks.semantic import SemanticTask

# these tests seed or draw from the global RNGs (torch.manual_seed, layer initialisation): given back after each
pytestmark = pytest.mark.usefixtures("seeded_and_restored")

SMALL = dict(width_mult=0.125)
H, W = 32, 64


def small_model(arch, num_classes=7, tasks=DEFAULT_TASKS, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, build_tasks(tasks, TaskSettings(classes=num_classes)), **SMALL)


def names_of(model, params):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for p in params]


def losses(outputs, tasks, num_classes):
    """A stand-in loss per task: NLL for semantic, L1 for depth."""
    torch.manual_seed(1)
    out = {}
    for task, pred in zip(tasks, outputs):
        if task == "semantic":
            target = torch.randint(0, num_classes, (pred.shape[0], H, W))
            out[task] = nn.functional.nll_loss(pred, target)
        else:
            out[task] = (pred - torch.rand_like(pred)).abs().mean()
    return out


# ---- size -----------------------------------------------------------------------------

def test_mtan_parameter_count_matches_reference():
    counts = build_model("mtan", build_tasks(DEFAULT_TASKS)).parameter_counts()
    assert counts["total"] == 41_206_984
    assert counts["shared"] + counts["semantic"] + counts["depth"] == counts["total"]


def test_split_parameter_count():
    counts = build_model("split", build_tasks(DEFAULT_TASKS)).parameter_counts()
    assert counts["total"] == 25_017_672
    assert counts["shared"] + counts["semantic"] + counts["depth"] == counts["total"]


def test_width_multiplier_scales_every_level():
    assert scaled_filters(1.0) == [64, 128, 256, 512, 512]
    assert scaled_filters(0.125) == [8, 16, 32, 64, 64]
    assert scaled_filters(1e-3) == [1, 1, 1, 1, 1]
    assert small_model("mtan").filters == [8, 16, 32, 64, 64]
    with pytest.raises(ValueError):
        scaled_filters(0)


# ---- outputs --------------------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("num_classes", [7, 19])
def test_output_shapes_and_log_softmax(arch, num_classes):
    model = small_model(arch, num_classes)
    assert model.tasks == DEFAULT_TASKS
    semantic, depth = model(torch.rand(2, 3, H, W))
    assert semantic.shape == (2, num_classes, H, W)
    assert depth.shape == (2, 1, H, W)
    torch.testing.assert_close(semantic.exp().sum(dim=1), torch.ones(2, H, W))


def test_outputs_follow_task_order():
    torch.manual_seed(0)
    model = build_model("mtan", [DepthTask(), SemanticTask()], **SMALL)
    depth, semantic = model(torch.rand(1, 3, H, W))
    assert depth.shape[1] == 1 and semantic.shape[1] == 7


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_single_task_model(arch, task):
    model = small_model(arch, tasks=(task,))
    other = next(t for t in DEFAULT_TASKS if t != task)
    assert model.tasks == (task,)
    assert not any(other in name for name, _ in model.named_parameters())
    outputs = model(torch.rand(1, 3, H, W))
    assert len(outputs) == 1
    assert outputs[0].shape[1] == (7 if task == "semantic" else 1)
    # The same network as the two-task one, minus the other task's branch and head.
    both = small_model(arch).parameter_counts()
    counts = model.parameter_counts()
    assert counts["shared"] == both["shared"] and counts[task] == both[task]
    assert counts["total"] == both["total"] - both[other]


# ---- shared vs task-specific parameters ---------------------------------------------------

@pytest.mark.parametrize("arch", sorted(MODELS))
def test_partition_is_disjoint_and_complete(arch):
    model = small_model(arch)
    shared = model.shared_parameters()
    per_task = model.task_specific_parameters()
    assert len(per_task) == len(model.tasks)
    ids = [id(p) for p in shared] + [id(p) for ps in per_task for p in ps]
    assert len(ids) == len(set(ids)), "a parameter is listed twice"
    assert set(ids) == {id(p) for p in model.parameters()}
    # Deterministic: a second build lists the same names in the same order.
    again = small_model(arch)
    assert names_of(model, shared) == names_of(again, again.shared_parameters())
    for ps, qs in zip(per_task, again.task_specific_parameters()):
        assert names_of(model, ps) == names_of(again, qs)


def test_mtan_attention_modules_belong_to_their_task():
    model = small_model("mtan")
    shared = set(names_of(model, model.shared_parameters()))
    for task, params in zip(model.tasks, model.task_specific_parameters()):
        own = set(names_of(model, params))
        expected = {n for n, _ in model.named_parameters()
                    if n.startswith((f"attention.{task}.", f"heads.{task}."))}
        assert own == expected
        assert any(n.startswith(f"attention.{task}.encoder.") for n in own)
        assert any(n.startswith(f"attention.{task}.decoder.") for n in own)
    block_names = {n for n, _ in model.named_parameters() if "_att_block." in n}
    assert block_names and block_names <= shared
    assert not any(n.startswith(("attention.", "heads.")) for n in shared)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_each_task_loss_reaches_only_shared_and_own_parameters(arch):
    model = small_model(arch)
    loss = losses(model(torch.rand(2, 3, H, W)), model.tasks, 7)
    shared = model.shared_parameters()
    per_task = model.task_specific_parameters()
    for k, task in enumerate(model.tasks):
        others = [p for j, ps in enumerate(per_task) if j != k for p in ps]
        params = shared + per_task[k] + others
        grads = torch.autograd.grad(loss[task], params, retain_graph=True, allow_unused=True)
        n_shared, n_own = len(shared), len(per_task[k])
        for name, g in zip(names_of(model, shared), grads[:n_shared]):
            assert g is not None and g.abs().sum() > 0, f"{task}: no gradient on shared {name}"
        assert all(g is not None and g.abs().sum() > 0 for g in grads[n_shared:n_shared + n_own])
        assert all(g is None for g in grads[n_shared + n_own:]), f"{task} reached another task"


# ---- layers ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(MODELS))
def test_shared_layers_cover_shared_parameters_in_order(arch):
    model = small_model(arch)
    layers = model.shared_layers()
    ids = [id(p) for _, ps in layers for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.shared_parameters()}
    names = [n for n, _ in layers]
    assert names[0] == "encoder.0.conv1" and names[-1] == "decoder.4.conv2"
    assert all(len(ps) == 4 for _, ps in layers)  # conv weight, bias; BN weight, bias
    # All encoder layers come before any decoder layer, levels in order.
    assert max(i for i, n in enumerate(names) if n.startswith("encoder")) < \
        min(i for i, n in enumerate(names) if n.startswith("decoder"))
    trunk_only = [n for n in names if "att_block" not in n]
    assert trunk_only == [f"{part}.{i}.conv{c}" for part in ("encoder", "decoder")
                          for i in range(5) for c in range(1, 4)
                          if c <= (2 if (i if part == "encoder" else 4 - i) < 2 else 3)]
    if arch == "mtan":
        assert names.index("encoder_att_block.0") == names.index("encoder.0.conv2") + 1
        assert names.index("decoder_att_block.0") == names.index("decoder.0.conv1") - 1


# ---- errors ---------------------------------------------------------------------------

def test_bad_image_size_is_a_clear_error():
    check_image_size(128, 256)
    with pytest.raises(ValueError, match="multiples of 32"):
        check_image_size(100, 256)
    model = small_model("mtan")
    with pytest.raises(ValueError, match=r"image size 48x64: .*multiples of 32"):
        model(torch.rand(1, 3, 48, 64))


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="mtan.*split"):
        build_model("resnet", build_tasks(DEFAULT_TASKS))


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="tasks"):
        build_tasks(("normal",))


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_three_tasks_one_branch_and_head_each(arch):
    model = small_model(arch, tasks=("depth", "instance", "semantic"))
    assert model.tasks == ("semantic", "instance", "depth")
    semantic, instance, depth = model(torch.rand(2, 3, H, W))
    assert (semantic.shape[1], instance.shape[1], depth.shape[1]) == (7, 2, 1)
    counts = model.parameter_counts()
    two = small_model(arch).parameter_counts()
    assert counts["shared"] == two["shared"] and counts["instance"] > 0
    assert counts["total"] == two["total"] + counts["instance"]


# ---- init -----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(MODELS))
def test_init(arch):
    model = small_model(arch)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs and norms
    for m in convs:
        assert torch.all(m.bias == 0) and m.weight.abs().sum() > 0
    for m in norms:
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
