"""SegNet multi-task models and their registry.

`build_model(arch, ...)` is the one way to construct a model; the CLI's `--arch` choices
are the keys of `MODELS`.
"""
from .blocks import TASKS, check_image_size
from .segnet_mtan import SegNetMTAN
from .segnet_split import SegNetSplit

MODELS = {"mtan": SegNetMTAN, "split": SegNetSplit}


def build_model(arch, num_classes=7, width_mult=1.0, tasks=TASKS):
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; valid names: {', '.join(MODELS)}")
    return MODELS[arch](num_classes=num_classes, width_mult=width_mult, tasks=tasks)


__all__ = ["MODELS", "TASKS", "SegNetMTAN", "SegNetSplit", "build_model", "check_image_size"]
