"""Wrong devices, names and places are refused before anything is made, naming the flag, and a
learning-rate schedule that overflows is a divergence (exit 3), not a traceback."""
import pytest

import main_cityscapes

pytestmark = pytest.mark.usefixtures("seeded_and_restored")  # main() runs in this process
TINY = ["--epochs", "2", "--batch-size", "4", "--width-mult", "0.125", "--num-workers", "0", "--device", "cpu"]


def run(data, *flags):
    return main_cityscapes.main(["--data-path", str(data), *TINY, *flags])


@pytest.mark.parametrize("device", ["meta", "mps", "cuda:x", "cpu:0"])
def test_an_unsupported_device_is_refused_before_anything_is_made(tiny_synthcity, tmp_path, capsys, device):
    with pytest.raises(SystemExit) as exit_:
        run(tiny_synthcity, "--out", str(tmp_path / "runs"), "--name", "r", "--device", device)
    assert exit_.value.code == 2 and f"--device {device}: expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../../escape", "a/b", "two\nlines", ".", "..", "_under", "x" * 201])
def test_a_name_that_is_not_one_safe_path_component_is_refused(tiny_synthcity, tmp_path, capsys, name):
    with pytest.raises(SystemExit) as exit_:
        run(tiny_synthcity, "--out", str(tmp_path / "runs" / "deep"), f"--name={name}")
    assert exit_.value.code == 2 and "a run folder's name is one path component" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def test_out_that_is_a_file_or_inside_a_run_folder_is_refused(tiny_synthcity, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert run(tiny_synthcity, "--out", str(tmp_path / "file"), "--name", "r") == 2
    assert f"--out {tmp_path / 'file'}: not a folder" in capsys.readouterr().err
    assert run(tiny_synthcity, "--out", str(tmp_path), "--name", "outer", "--epochs", "1") == 0
    capsys.readouterr()
    assert run(tiny_synthcity, "--out", str(tmp_path / "outer" / "nested"), "--name", "inner") == 2
    assert f"inside the run folder {tmp_path / 'outer'}" in capsys.readouterr().err
    assert not (tmp_path / "outer" / "nested").exists()


def test_a_learning_rate_that_overflows_is_a_divergence(tiny_synthcity, tmp_path, capsys):
    status = run(tiny_synthcity, "--out", str(tmp_path), "--name", "r", "--method", "sgd", "--lr", "1",
                 "--lr-gamma", "1e308", "--lr-step", "1", "--epochs", "3")
    assert status == 3
    err = capsys.readouterr().err
    assert "the learning rate of epoch 2 is 1e+308, beyond torch.float32's range" in err
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 1 kept


def test_the_continue_command_of_a_torchrun_run_is_a_torchrun(monkeypatch):
    """A stopped run of several processes printed a one-process command."""
    from experiment.world import SINGLE, World

    assert main_cityscapes.continue_command("runs/r", SINGLE).endswith(" main_cityscapes.py --resume runs/r")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    command = main_cityscapes.continue_command("runs/r", World(rank=0, size=2))
    assert command.endswith(" -m torch.distributed.run --nproc-per-node 2 main_cityscapes.py --resume runs/r")
    command = main_cityscapes.continue_command("runs/r", World(rank=0, size=4))
    assert "--nproc-per-node 2 main_cityscapes.py --resume runs/r (on each of its 2 nodes" in command


def test_a_metrics_line_that_is_no_json_is_named_with_its_file_and_line(tmp_path):
    """The message was json's alone ("Unterminated string ..."), naming no file."""
    from evaluation.run_record import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1, "te\n')
    with pytest.raises(ValueError, match=f"{tmp_path / 'metrics.jsonl'} line 2: not JSON \\(Unterminated string"):
        read_metrics(tmp_path)
