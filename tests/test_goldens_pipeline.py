"""The pipeline against the reference AdaTask code (EnnengYang/AdaTask, main_cityscapes.py):
tests/goldens/pipeline_*.json, written by `python -m scripts.make_goldens --adatask PATH`
(scripts/goldens/adatask.py says what each holds and how the weights and inputs are drawn).

- forward: our SegNet-MTAN at full width, from the same seeded weights, gives the reference's
  outputs (train and eval mode) and BatchNorm statistics to 1e-12 relative in float64;
- augmentation: the same forced draws give the reference's image to 1e-6 and its label and
  depth exactly;
- three steps of Adam with AdaTask through our training engine give the reference's losses
  and parameter displacements to 1e-10 relative.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.augment import draw_crop
from models import build_model
from optim import build_optimizer
from optim.engine import TrainingEngine
from optim.weighting import build_weighting
from scripts.goldens import adatask as pipeline
from tasks import TaskSettings, build_tasks

pytestmark = pytest.mark.slow  # end-to-end runs: not in the quick subset (docs/tests.md)

GOLDENS = Path(__file__).resolve().parent / "goldens"


def golden(name):
    return json.loads((GOLDENS / f"pipeline_{name}.json").read_text())


def seeded_model():
    """(our SegNet-MTAN in float64 with the golden's seeded weights, its tasks, {our state_dict
    key: the reference's})."""
    tasks = build_tasks(pipeline.TASKS, TaskSettings(classes=7))
    with torch.random.fork_rng():  # the layer initialisation draws; the seeded state replaces it
        model = build_model("mtan", tasks, 1.0).double()
    state = model.state_dict()
    names = {key: pipeline.reference_name(key) for key in state}
    values = pipeline.seeded_state((names[key], value.shape) for key, value in state.items())
    model.load_state_dict({key: values[names[key]] for key in state})
    return model, tasks, names


@pytest.fixture(scope="module")
def seeded():
    return seeded_model()


def worst(differences):
    return max(differences, key=lambda d: d[1])


def check_summaries(want, got, tolerance, where):
    what, relative = worst(pipeline.summary_differences(want, got))
    assert relative <= tolerance, f"{where} {what}: relative difference {relative:.3g} > {tolerance:g}"


def check_batchnorm(want, got, tolerance, where):
    assert set(got) == set(want)
    for layer, stats in want.items():
        for key in ("mean", "var"):
            check_summaries(stats[key], got[layer][key], tolerance, f"{where} {layer} running_{key}")


def test_our_parameters_are_the_reference_parameters(seeded):
    model, _, names = seeded
    want = golden("forward")["reference_state"]
    ours = sorted(f"{names[key]} {'x'.join(map(str, value.shape))}" for key, value in model.state_dict().items())
    assert ours == sorted(want)
    assert sum(p.numel() for p in model.parameters()) == 41_206_984  # the count of the reference


def test_forward_equals_the_reference(seeded):
    model, _, names = seeded
    g = golden("forward")
    tolerance = g["tolerance"]["relative"]
    expected = g["cases"][0]["expected"][0]
    image = pipeline.batch(pipeline.BATCH_SEED, 0)[0]
    before = {key: value.clone() for key, value in model.state_dict().items()}
    try:
        model.train()
        with torch.no_grad():
            train = model(image)
            statistics = pipeline.batchnorm_summaries({names[k]: v for k, v in model.state_dict().items()})
            model.eval()
            evaluation = model(image)
    finally:
        model.load_state_dict(before)
    for mode, outputs in (("train", train), ("eval", evaluation)):
        for task, out in zip(pipeline.TASKS, outputs):
            check_summaries(expected[mode][task], pipeline.summary(out), tolerance, f"{mode} {task}")
    check_batchnorm(expected["batchnorm"], statistics, tolerance, "after the train pass")


class Forced:
    """A numpy Generator's stand-in for draw_crop: the forced scale index, window top and left, flip."""

    def __init__(self, draws):
        self._ints = [draws["scale_index"], draws["top"], draws["left"]]
        self._flip = draws["flip"]

    def integers(self, high):
        value = self._ints.pop(0)
        assert 0 <= value < high
        return value

    def random(self):
        return 0.25 if self._flip else 0.75


def augmented(draws, resampling="align_corners"):
    """Our dataset's path for the golden sample: draw_crop, the image resized, each target
    through its task."""
    image, label, depth = pipeline.augment_sample()
    semantic, depth_task = build_tasks(pipeline.TASKS, TaskSettings(classes=7))
    crop = draw_crop(Forced(draws), *label.shape)
    if crop is None:
        return image, label, depth
    return crop.image(image, resampling), semantic.augment(label, crop), depth_task.augment(depth, crop)


@pytest.mark.parametrize("index", range(len(pipeline.AUGMENT_DRAWS)))
def test_augmentation_equals_the_reference(index):
    g = golden("augment")
    case = g["cases"][index]
    want = case["expected"][0]
    image, label, depth = augmented(case["draws"])
    np.testing.assert_allclose(image.reshape(-1), pipeline.from_text(want["image"]), rtol=0,
                               atol=g["tolerance"]["image"])
    np.testing.assert_array_equal(label.reshape(-1), pipeline.from_text(want["label"]))
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth.reshape(-1), pipeline.from_text(want["depth"]))
    if case["draws"]["scale_index"] > 0:  # the legacy resampling is another image
        legacy = augmented(case["draws"], "opencv")[0]
        assert np.abs(legacy.reshape(-1) - pipeline.from_text(want["image"])).max() > 1e-2


def test_three_adatask_steps_equal_the_reference():
    model, tasks, names = seeded_model()
    g = golden("steps")
    tolerance = g["tolerance"]["relative"]
    expected = g["cases"][0]["expected"]
    start = {names[k]: p.detach().clone() for k, p in model.named_parameters()}
    optimizer = build_optimizer("adam_with_adatask", model.shared_parameters(), model.task_specific_parameters(),
                                g["setup"]["lr"])
    weighting = build_weighting("ew", len(tasks))

    def compute_losses(batch):
        image, labels, depth = batch
        preds = model(image)
        return preds, [task.loss_terms(p, y) for task, p, y in zip(tasks, preds, (labels, depth))]

    engine = TrainingEngine(model, optimizer, weighting, compute_losses, pipeline.TASKS)
    model.train()
    for index, want in enumerate(expected):
        result = engine.train_step(pipeline.batch(pipeline.BATCH_SEED, 1 + index), epoch=0)
        for task, a, b in zip(pipeline.TASKS, want["losses"], result.losses):
            assert abs(a - b) <= tolerance * abs(a), f"step {index + 1} loss of {task}: ours {b!r}, reference {a!r}"
        moved = pipeline.group_summaries({names[k]: p.detach() for k, p in model.named_parameters()}, start)
        for group, summary in want["moved"].items():
            check_summaries(summary, moved[group], tolerance, f"step {index + 1} displacement of the {group} parameters")
    check_batchnorm(g["cases"][0]["batchnorm"], pipeline.batchnorm_summaries(
        {names[k]: v for k, v in model.state_dict().items()}), tolerance, f"after {len(expected)} steps")
