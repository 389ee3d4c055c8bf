"""scripts/gpu_report.py on the CPU: `--device cpu --quick` writes report.md with every section's
heading and a file per section; a run killed right after its first section keeps that section,
whole, and a report that says the rest did not run. The CUDA memory breakdown's replay of an
allocation history is checked on a made-up history. No timing is asserted."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import gpu_report

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# the recipe's estimate has its own tests (sweeps reproduce --estimate) and costs a minute here
SECTIONS = ["step", "memory", "throughput", "options"]


def report_cmd(out, *extra):
    return [sys.executable, "-m", "scripts.gpu_report", "--device", "cpu", "--quick", "--out", str(out), *extra]


def headings(text):
    return [line.removeprefix("## ") for line in text.splitlines() if line.startswith("## ")]


@pytest.mark.slow
def test_quick_report_on_the_cpu(tmp_path):
    out = tmp_path / "report"
    subprocess.run(report_cmd(out, "--sections", *SECTIONS), cwd=REPO, env=ENV, check=True, capture_output=True)
    report = (out / "report.md").read_text()

    assert headings(report) == list(gpu_report.TITLES.values())
    assert "Not run on a GPU yet" in report
    for name in gpu_report.TITLES:
        assert (out / f"{name}.md").read_text().strip()
        json.loads((out / f"{name}.json").read_text())
    step = json.loads((out / "step.json").read_text())
    assert set(step) == {"K=2", "K=3"} and all(set(k["methods"]) == set(gpu_report.METHODS) for k in step.values())
    assert "| adam_with_adatask |" in report and "| 4 |" in report and "| amp + channels_last |" in report
    assert "not run: the breakdown reads torch.cuda's allocator" in report
    assert "not run: not selected (--sections)" in (out / "estimate.md").read_text()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_a_run_killed_after_its_first_section_keeps_it(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.Popen(report_cmd(out, "--sections", "step", "throughput"), cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "### K = 3" not in ((out / "report.md").read_text() if (out / "report.md").exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "the first section never reached report.md"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    report = (out / "report.md").read_text()
    assert headings(report) == list(gpu_report.TITLES.values())
    assert "### K = 2" in (out / "step.md").read_text() and set(json.loads((out / "step.json").read_text())) == {
        "K=2", "K=3"}
    throughput = report.split(gpu_report.TITLES["throughput"])[1].split("## ")[0]
    assert "not run: pending" in throughput
    assert not (out / "throughput.md").exists()


def test_memory_breakdown_replays_the_allocation_history():
    """Alive at the peak: what was allocated and not yet freed when the allocated total was
    highest; grouped by the innermost repository frame and by size class."""
    here = {"filename": str(REPO / "optim" / "adatask.py"), "line": 7, "name": "step"}
    torch_frame = {"filename": "/usr/lib/python3/site-packages/torch/x.py", "line": 1, "name": "f"}
    relative = {"filename": "models/mtan.py", "line": 3, "name": "forward"}
    mib = gpu_report.MIB
    events = [
        {"action": "segment_alloc", "addr": 0, "size": 512 * mib},
        {"action": "alloc", "addr": 1, "size": 200 * mib, "frames": [torch_frame, here]},
        {"action": "alloc", "addr": 2, "size": 5 * mib, "frames": [relative]},
        {"action": "alloc", "addr": 3, "size": 1000, "frames": []},
        {"action": "free_requested", "addr": 2, "size": 5 * mib},
        {"action": "free_completed", "addr": 2, "size": 5 * mib},
        {"action": "alloc", "addr": 4, "size": 4 * mib, "frames": [relative]},
        {"action": "free_completed", "addr": 1, "size": 200 * mib},  # no request recorded: freed here
        {"action": "alloc", "addr": 5, "size": 100 * mib, "frames": [here]},
    ]
    peak, alive = gpu_report.live_at_peak(events)
    assert peak == 205 * mib + 1000
    assert sorted(e["addr"] for e in alive) == [1, 2, 3]
    by_line, by_size = gpu_report.group_bytes(alive)
    assert by_line == {"optim/adatask.py:7 step": 200 * mib, "models/mtan.py:3 forward": 5 * mib,
                       gpu_report.NO_FRAME: 1000}
    assert by_size["≥ 100 MiB"] == [1, 200 * mib] and by_size["1–10 MiB"] == [1, 5 * mib]
    assert by_size["< 1 MiB (small pool)"] == [1, 1000] and by_size["10–100 MiB"] == [0, 0]

    stats = dict.fromkeys(gpu_report.STATS, 0)
    base = {"max_memory_allocated_mib": 100.0, "replayed_peak_mib": 100.0, "by_line": {"a.py:1 f": 100 * mib},
            "by_size": {label: [1, 0] for _, label in gpu_report.SIZE_CLASSES}, "stats": stats}
    ada = {**base, "max_memory_allocated_mib": 300.0, "by_line": {"a.py:1 f": 100 * mib, "b.py:2 g": 200 * mib}}
    table = "\n".join(gpu_report.breakdown_table(base, ada, 2, 150.0))
    assert "+200 MiB (bound 150 MiB)" in table and "| `b.py:2 g` | 0.0 | 200.0 | +200.0 |" in table
