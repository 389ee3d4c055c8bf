"""Δm, the average relative change against a single-task baseline (METHODS §2).

Δm (%) = (1/4) Σ_j s_j (M_j − B_j) / B_j × 100, s = −1 where higher is better (mIoU, PixAcc)
and +1 where lower is better (AbsErr, RelErr), so lower Δm is better. All metrics are
fractions (mIoU 0.75, not 75); RelErr is a raw ratio.
"""
import json
import math
from pathlib import Path

METRIC_SIGNS = {"miou": -1, "pix_acc": -1, "abs_err": +1, "rel_err": +1}

# Single-task row of the CityScapes table in Navon et al. 2022, "Multi-Task Learning as a
# Bargaining Game" (Nash-MTL), for the 7-class 128x256 release. RelErr is a raw ratio.
PUBLISHED_BASELINE = {"miou": 0.7401, "pix_acc": 0.9316, "abs_err": 0.0125, "rel_err": 27.77}
PUBLISHED_NAME = "published-7class-128x256"

_FRACTIONS = ("miou", "pix_acc")  # bounded by 1: a value above it was written in percent
_EXPECTED = f"a JSON object with positive numbers for {', '.join(METRIC_SIGNS)} (mIoU and PixAcc as fractions)"


def delta_m(metrics, baseline):
    """Δm in percent of `metrics` against `baseline` (dicts keyed by the four metric names)."""
    missing = [k for k in METRIC_SIGNS if k not in metrics or k not in baseline]
    if missing:
        raise ValueError(f"Δm needs {', '.join(METRIC_SIGNS)} in both metrics and baseline; missing {missing}")
    total = sum(s * (metrics[k] - baseline[k]) / baseline[k] for k, s in METRIC_SIGNS.items())
    return total / len(METRIC_SIGNS) * 100


def load_baseline(path):
    """The four baseline metrics from a JSON file; extra keys (e.g. "source") are ignored."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"baseline file {path}: cannot read it ({e.strerror}); expected {_EXPECTED}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"baseline file {path}: invalid JSON ({e}); expected {_EXPECTED}") from e
    if not isinstance(data, dict):
        raise ValueError(f"baseline file {path}: expected {_EXPECTED}, got {type(data).__name__}")
    baseline = {}
    for key in METRIC_SIGNS:
        value = data.get(key)
        # bool is an int subclass; true/false is not a metric value.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"baseline file {path}: \"{key}\" must be a positive number, got {value!r}; "
                             f"expected {_EXPECTED}")
        if key in _FRACTIONS and value > 1:
            raise ValueError(f"baseline file {path}: \"{key}\" = {value} is not a fraction in (0, 1]; "
                             f"write e.g. 0.7401, not 74.01")
        baseline[key] = float(value)
    return baseline


def select_baseline(num_classes, image_size, synthetic, baseline_file=None):
    """(baseline or None, its name or None, why) for a run's setup.

    A baseline file always wins. The published numbers apply only to the real 7-class 128x256
    release; anything else needs single-task runs measured in the same setup.
    """
    if baseline_file is not None:
        return load_baseline(baseline_file), str(baseline_file), f"baseline from {baseline_file}"
    height, width = image_size
    reasons = []
    if synthetic:
        reasons.append("SynthCity data is synthetic")
    if num_classes != 7:
        reasons.append(f"{num_classes} classes (the published numbers are 7-class)")
    if (height, width) != (128, 256):
        reasons.append(f"image size {height}x{width} (the published numbers are 128x256)")
    if reasons:
        why = "; ".join(reasons)
        return None, None, f"{why}: published CityScapes numbers do not apply; pass --baseline FILE from single-task runs"
    return dict(PUBLISHED_BASELINE), PUBLISHED_NAME, "published single-task row (Nash-MTL paper, 7-class 128x256)"
