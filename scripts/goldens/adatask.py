"""Goldens of the reference AdaTask pipeline: the authors' CityScapes code (EnnengYang/AdaTask,
main_cityscapes.py with SegNet-MTAN, Adam_with_AdaTask and RandomScaleCropCityScapes), run
from a checkout by `python -m scripts.make_goldens --adatask PATH`. Three files:

- pipeline_forward.json: one train-mode forward pass of SegNet-MTAN at full width on a
  2×3×32×64 float64 batch, then one eval-mode pass: output summaries and every BatchNorm
  layer's running statistics after the train pass;
- pipeline_augment.json: forced draws (scale index, window top and left, flip) of the
  augmentation on a 10×16 sample: the image, label and depth it returns (as text: each
  array's values, float32 written with 9 significant digits, which read back exactly);
- pipeline_steps.json: three training steps of Adam with AdaTask (lr 1e-4), equal weights:
  the two losses of each step and summaries of how far the parameters moved.

No weights are stored, only how they are made (`seeded_state`): every parameter, named as
the reference names it, is drawn from PCG64 seeded by [seed, CRC-32 of that name] as exact
dyadic numbers, so both models start from the same bits on any machine. tests/
test_goldens_pipeline.py maps our parameter names to the reference's (`reference_name`),
builds the same state and compares. This module holds that shared procedure; the published
code is imported only inside `make`, from the checkout, under module names of its own.
"""
import importlib.util
import re
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

REPOSITORY = "https://github.com/EnnengYang/AdaTask"
WEIGHT_SEED, BATCH_SEED, AUGMENT_SEED = 24, 25, 26
BATCH, HEIGHT, WIDTH = 2, 32, 64
AUGMENT_SIZE = (10, 16)
LR = 1e-4
STEPS = 3
SAMPLES, BN_SAMPLES = 64, 4  # values kept of each summarised tensor, of each BatchNorm statistic
# (scale index into (1.0, 1.2, 1.5), window top, window left, flip): the forced draws; windows
# of 10×16 (s = 1), 8×13 and 6×10, at corners and inside
AUGMENT_DRAWS = ((0, 0, 0, False), (0, 0, 0, True), (1, 2, 3, False), (1, 1, 2, True),
                 (2, 4, 6, False), (2, 0, 0, True))
TASKS = ("semantic", "depth")  # the reference's task order: pred_task1, pred_task2


def _dyadic(rng, shape):
    """Exact dyadic values in [-1, 1) (as scripts/goldens/inputs.py draws them)."""
    return rng.integers(0, 2**31, size=shape, dtype=np.int64) / 2.0**30 - 1.0


def _rng(seed, name):
    return np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))


def seeded_value(name, shape, seed=WEIGHT_SEED):
    """The starting value of the reference's tensor `name` (a state_dict key of SegNetMtan):
    conv weights uniform in [-1, 1) times 2^-floor(log2(fan_in)/2) (about Xavier's scale),
    biases times 1/16, BatchNorm weights 1 + u/4, BatchNorm biases u/4, running means u/8,
    running variances 1 + u/4 (so the eval pass reads drawn statistics too); all exact."""
    rng = _rng(seed, name)
    u = _dyadic(rng, shape)
    kind = name.rsplit(".", 1)[1]
    if kind == "num_batches_tracked":
        return np.zeros(shape)
    if kind == "running_mean":
        return u / 8
    if kind == "running_var":
        return 1 + u / 4
    if len(shape) == 4:  # a conv weight
        fan_in = shape[1] * shape[2] * shape[3]
        return u * 2.0 ** -((fan_in.bit_length() - 1) // 2)
    if kind == "bias":
        return u / 4 if _is_batchnorm(name) else u / 16
    return 1 + u / 4  # a BatchNorm weight


def _is_batchnorm(name):
    """Whether a reference 1-D parameter belongs to a BatchNorm (by its place in the
    Sequential: conv-BN-ReLU blocks have the BN at index 1, attention blocks at 1 and 4)."""
    index = int(name.split(".")[-2])
    return index in (1, 4) and "pred_task" not in name


def seeded_state(names_and_shapes, seed=WEIGHT_SEED):
    """{reference name: float64 tensor} for the (reference name, shape) pairs."""
    return {name: torch.from_numpy(np.asarray(seeded_value(name, tuple(shape), seed), dtype=np.float64))
            for name, shape in names_and_shapes}


def reference_name(ours):
    """The reference SegNetMtan's state_dict key of one of our SegNetMTAN's (tasks semantic,
    depth). Our decoder lists run in execution order (deepest first); the reference indexes
    its decoder layers by level, so our stage j is its level 4 - j."""
    parts = ours.split(".")
    leaf = parts[-1]
    within = {"conv": "0", "bn": "1"}
    if parts[0] in ("encoder", "decoder"):
        level = int(parts[1]) if parts[0] == "encoder" else 4 - int(parts[1])
        layer, part = parts[2], within[parts[3]]
        side = "enc" if parts[0] == "encoder" else "dec"
        first = "encoder_block" if side == "enc" else "decoder_block"
        if layer == "conv1":
            return f"segnet.{first}.{level}.{part}.{leaf}"
        if level < 2:  # one more layer, a plain conv-BN-ReLU
            return f"segnet.conv_block_{side}.{level}.{part}.{leaf}"
        return f"segnet.conv_block_{side}.{level}.{int(layer[4:]) - 2}.{part}.{leaf}"
    if parts[0] == "encoder_att_block":
        return f"segnet.encoder_block_att.{parts[1]}.{within[parts[2]]}.{leaf}"
    if parts[0] == "decoder_att_block":
        return f"segnet.decoder_block_att.{4 - int(parts[1])}.{within[parts[2]]}.{leaf}"
    if parts[0] == "attention":
        task = TASKS.index(parts[1])
        level = int(parts[3]) if parts[2] == "encoder" else 4 - int(parts[3])
        part = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4"}[parts[4]]
        return f"segnet.{parts[2]}_att.{task}.{level}.{part}.{leaf}"
    if parts[0] == "heads":
        return f"segnet.pred_task{TASKS.index(parts[1]) + 1}.{int(parts[2][4:]) - 1}.{leaf}"
    raise ValueError(f"no reference name for {ours!r}")


def _sign_pattern(size):
    return torch.from_numpy(np.random.Generator(np.random.PCG64(size)).integers(0, 2, size) * 2.0 - 1.0)


def summary(tensor, samples=SAMPLES):
    """A float64 tensor in a few numbers: sum, sum of |x|, sum of x², the sum of x times a
    seeded ±1 pattern (any local change shows), max |x| and `samples` evenly strided values."""
    x = tensor.detach().to(torch.float64).reshape(-1)
    stride = max(1, x.numel() // samples)
    return {"sum": x.sum().item(), "abs": x.abs().sum().item(), "sq": (x * x).sum().item(),
            "signed": (x * _sign_pattern(x.numel())).sum().item(), "max": x.abs().max().item(),
            "sample": x[::stride][:samples].tolist()}


def summary_differences(want, got):
    """[(what, |difference| / its scale)] of two summaries: sums and the signed sum against the
    sum of |x|, the sum of squares against itself, samples against max |x| (never 0-scaled)."""
    scale = max(want["abs"], 1e-300)
    out = [(key, abs(want[key] - got[key]) / scale) for key in ("sum", "abs", "signed")]
    out.append(("sq", abs(want["sq"] - got["sq"]) / max(want["sq"], 1e-300)))
    top = max(want["max"], 1e-300)
    out.append(("max", abs(want["max"] - got["max"]) / top))
    assert len(want["sample"]) == len(got["sample"])
    out += [(f"sample[{i}]", abs(a - b) / top) for i, (a, b) in enumerate(zip(want["sample"], got["sample"]))]
    return out


def batch(seed, index):
    """The index-th float64 batch: image (B, 3, H, W) in [0, 1), labels (B, H, W) in -1..6
    (-1 void), depth (B, 1, H, W) in [1/64, 1) and 0 wherever the label is void; exact."""
    rng = np.random.Generator(np.random.PCG64([seed, index]))
    image = (_dyadic(rng, (BATCH, 3, HEIGHT, WIDTH)) + 1) / 2
    labels = rng.integers(-1, 7, size=(BATCH, HEIGHT, WIDTH))
    depth = np.maximum((_dyadic(rng, (BATCH, 1, HEIGHT, WIDTH)) + 1) / 2, 1 / 64)
    depth[labels[:, None] == -1] = 0
    return torch.from_numpy(image), torch.from_numpy(labels), torch.from_numpy(depth)


def augment_sample():
    """The 10×16 sample of the augmentation golden in the release layout: image (H, W, 3) float32
    in [0, 1) (textured: independent pixels), label (H, W) float32 in -1..6, depth (H, W, 1)
    float32 with 0 where the label is void; exact dyadic values."""
    rng = np.random.Generator(np.random.PCG64(AUGMENT_SEED))
    height, width = AUGMENT_SIZE
    image = ((_dyadic(rng, (height, width, 3)) + 1) / 2).astype(np.float32)
    label = rng.integers(-1, 7, size=(height, width)).astype(np.float32)
    depth = np.maximum((_dyadic(rng, (height, width, 1)) + 1) / 2, 1 / 64).astype(np.float32)
    depth[label == -1] = 0
    return image, label, depth


def as_text(array):
    """A float32 array's values, flattened, as one line of text (9 significant digits: each
    reads back as the same float32)."""
    return " ".join(f"{v:.9g}" for v in np.asarray(array, dtype=np.float32).reshape(-1).tolist())


def from_text(text):
    return np.array([float(v) for v in text.split()], dtype=np.float64).astype(np.float32)


def parameter_groups(names):
    """The reference's split of its parameter names: shared, then each task's own (its
    attention masks encoder_att/decoder_att and its head pred_task<k>)."""
    def owner(name):
        if "pred_task" in name:
            return TASKS[int(re.search(r"pred_task(\d)", name).group(1)) - 1]
        match = re.search(r"coder_att\.(\d)\.", name)
        return TASKS[int(match.group(1))] if match else "shared"
    return {group: sorted(n for n in names if owner(n) == group) for group in ("shared", *TASKS)}


def bias_before_batchnorm(name):
    """Whether a reference parameter is the bias of a convolution that a BatchNorm follows: the
    BN subtracts it again, so its true gradient is 0 and what Adam steps on is rounding noise
    (lr·g/ε with g about 1e-17), which differs between any two implementations or CPUs."""
    return name.endswith("bias") and int(name.split(".")[-2]) in (0, 3) and "pred_task" not in name


def group_summaries(values, start):
    """{group: summary of its parameters' displacement from `start`, concatenated in name order},
    without the biases that a BatchNorm cancels (bias_before_batchnorm)."""
    return {group: summary(torch.cat([(values[n] - start[n]).reshape(-1) for n in names
                                      if not bias_before_batchnorm(n)]))
            for group, names in parameter_groups(list(values)).items()}


def batchnorm_summaries(state):
    """{BatchNorm layer (reference name): {"mean": summary, "var": summary}} from a state_dict
    (BN_SAMPLES values each: the signed sum already sees every channel)."""
    return {name[:-len(".running_mean")]: {"mean": summary(value, BN_SAMPLES),
                                           "var": summary(state[name[:-4] + "var"], BN_SAMPLES)}
            for name, value in sorted(state.items()) if name.endswith(".running_mean")}


# ---- the published code (make only) -------------------------------------------------------

def _load(checkout, names):
    """The checkout's modules `names` under private names, with its own imports (data, models,
    utils, ...) resolved to its files while they load; sys.modules is restored after."""
    saved = {name: sys.modules.get(name) for name in names}
    loaded = {}
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(f"adatask_reference_{name}", checkout / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return loaded


def _reference_model(ref):
    model = ref["models"].SegNetMtan().double()
    state = model.state_dict()
    model.load_state_dict(seeded_state((name, value.shape) for name, value in state.items()))
    return model


def _reference_of(checkout):
    from scripts.make_goldens import commit_of
    return {"repository": REPOSITORY, "commit": commit_of(checkout), "file": "main_cityscapes.py"}


def _forward_golden(ref, reference):
    torch.manual_seed(0)
    model = _reference_model(ref)
    image = batch(BATCH_SEED, 0)[0]
    model.train()
    with torch.no_grad():
        train = model(image)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.eval()
        evaluation = model(image)
    return {"method": "pipeline_forward",
            "reference": {**reference, "function": "models.SegNetMtan.forward"},
            "setup": {"weights": "scripts.goldens.adatask.seeded_state", "weight_seed": WEIGHT_SEED,
                      "input": f"scripts.goldens.adatask.batch({BATCH_SEED}, 0)[0]", "dtype": "float64"},
            "tolerance": {"relative": 1e-12, "why": "float64 through 30+ layers: rounding differs across CPUs "
                                                    "(bitwise equality fails), summaries relative to their scale"},
            "reference_state": [f"{name} {'x'.join(map(str, value.shape))}" for name, value in state.items()],
            "cases": [{"name": "train pass, then eval pass",
                       "expected": [{"train": {task: summary(out) for task, out in zip(TASKS, train)},
                                     "eval": {task: summary(out) for task, out in zip(TASKS, evaluation)},
                                     "batchnorm": batchnorm_summaries(state)}]}]}


class _Forced:
    """Stands in for the reference data module's `random` and for its torch.rand: yields the
    forced scale index, window top and left, and a flip draw below or above 0.5."""

    def __init__(self, draws):
        self._ints, self._flip = list(draws[:3]), draws[3]

    def randint(self, low, high):
        value = self._ints.pop(0)
        assert low <= value <= high, (low, value, high)
        return value

    def rand(self, *shape):
        return torch.full(shape, 0.25 if self._flip else 0.75)

    def __getattr__(self, name):  # the rest of torch
        return getattr(torch, name)


def _augment_golden(ref, reference):
    data = ref["data"]
    image, label, depth = augment_sample()
    out = []
    with tempfile.TemporaryDirectory() as root:
        for folder, array in (("image", image), ("label_7", label), ("depth", depth)):
            Path(root, "train", folder).mkdir(parents=True)
            np.save(Path(root, "train", folder, "0.npy"), array)
        dataset = data.CityScapes(root, train=True, augmentation=True)
        for draws in AUGMENT_DRAWS:
            forced = _Forced(draws)
            data.random, data.torch = forced, forced
            try:
                got_image, got_label, got_depth = dataset[0]
            finally:
                data.random, data.torch = __import__("random"), torch
            out.append({"name": "s{}-top{}-left{}{}".format(*draws[:3], "-flip" if draws[3] else ""),
                        "draws": {"scale_index": draws[0], "top": draws[1], "left": draws[2], "flip": draws[3]},
                        "expected": [{"image": as_text(got_image.permute(1, 2, 0)), "label": as_text(got_label),
                                      "depth": as_text(got_depth.permute(1, 2, 0))}]})
    return {"method": "pipeline_augment",
            "reference": {**reference, "file": "data.py", "function": "CityScapes.__getitem__ (RandomScaleCropCityScapes)"},
            "setup": {"sample": "scripts.goldens.adatask.augment_sample", "size": list(AUGMENT_SIZE),
                      "layout": "image (H, W, 3), label (H, W), depth (H, W, 1), flattened"},
            "tolerance": {"image": 1e-6, "label": 0, "depth": 0,
                          "why": "the image is float32 bilinear (weights rounded as torch computes them); "
                                 "labels and depth are nearest-neighbour copies, exact"},
            "cases": out}


def _steps_golden(ref, reference):
    main = ref["main_cityscapes"]
    torch.manual_seed(0)
    model = _reference_model(ref)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = ref["adatask"].Adam_with_AdaTask([dict(params=model.parameters(), lr=LR)], n_tasks=2, device="cpu")
    steps = []
    for index in range(STEPS):
        image, labels, depth = batch(BATCH_SEED, 1 + index)
        model.train()
        optimizer.zero_grad()
        preds = model(image)
        losses = torch.stack((main.calc_loss(preds[0], labels, "semantic"), main.calc_loss(preds[1], depth, "depth")))
        optimizer.backward_and_step(losses=losses, shared_parameters=list(model.shared_parameters()),
                                    task_specific_parameters=list(model.task_specific_parameters()),
                                    last_shared_parameters=list(model.last_shared_parameters()))
        moved = group_summaries({n: p.detach() for n, p in model.named_parameters()}, start)
        steps.append({"losses": losses.tolist(), "moved": moved})
    return {"method": "pipeline_steps",
            "reference": {**reference, "function": "adatask.Adam_with_AdaTask.backward_and_step, calc_loss"},
            "setup": {"weights": "scripts.goldens.adatask.seeded_state", "weight_seed": WEIGHT_SEED,
                      "batches": f"scripts.goldens.adatask.batch({BATCH_SEED}, 1..{STEPS})", "lr": LR,
                      "optimizer": "adam_with_adatask", "weighting": "ew", "dtype": "float64"},
            "tolerance": {"relative": 1e-10, "why": "float64; Adam divides by √v, so a gradient's rounding "
                                                    "moves a step by a little more than it moves the gradient"},
            "cases": [{"name": f"{STEPS} steps", "expected": steps,
                       "batchnorm": batchnorm_summaries(model.state_dict())}]}


def make(checkout):
    """The three pipeline goldens from a checkout of EnnengYang/AdaTask."""
    checkout = Path(checkout)
    ref = _load(checkout, ["common", "utils", "weight_methods", "models", "data", "adatask", "main_cityscapes"])
    reference = _reference_of(checkout)
    with torch.random.fork_rng():
        return [_augment_golden(ref, reference), _forward_golden(ref, reference), _steps_golden(ref, reference)]
