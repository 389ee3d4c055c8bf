"""What the tests on a real local Ray share: Ray installed, or a skip that says how to get it
(a failure under CI, which must run them), and the environment of Ray's processes, the sweeps
and their runs."""
import importlib.util
import os
import secrets
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = "pip install ray==2.60.0"


def require_ray(module_level=False):
    if importlib.util.find_spec("ray") is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"ray is not installed, and CI must run the Ray backend's tests: {INSTALL}", pytrace=False)
    pytest.skip(f"ray is not installed ({INSTALL})", allow_module_level=module_level)


def ray_env():
    """Token authentication (one token for the head and the sweep, nothing written to ~/.ray), one
    thread, no GPU inherited, no parent's MTL_PARENT_PID, the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "MTL_PARENT_PID")}
    return env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "OMP_NUM_THREADS": "1",
                  "PYTHONPATH": str(REPO)}
