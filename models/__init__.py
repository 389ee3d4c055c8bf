"""SegNet multi-task models and their registry.

`build_model(arch, tasks, width_mult)` is the one way to construct a model; the CLI's
`--arch` choices are the keys of `MODELS`.
"""
from .blocks import check_image_size
from .segnet_mtan import SegNetMTAN
from .segnet_split import SegNetSplit

MODELS = {"mtan": SegNetMTAN, "split": SegNetSplit}


def build_model(arch, tasks, width_mult=1.0):
    """The `arch` network with one branch and head per Task object in `tasks` (tasks/)."""
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; valid names: {', '.join(MODELS)}")
    return MODELS[arch](tasks, width_mult=width_mult)


__all__ = ["MODELS", "SegNetMTAN", "SegNetSplit", "build_model", "check_image_size"]
