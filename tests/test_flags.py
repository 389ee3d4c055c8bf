"""Flags that no run accepts are refused before anything is made; flags that do nothing warn."""
import pytest

import main_cityscapes


def refused(capsys, *flags, out):
    with pytest.raises(SystemExit) as stop:
        main_cityscapes.parse_args(["--out", str(out), *flags])
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [
    (["--lr-gamma", "-1"], "--lr-gamma -1.0: must be positive"),
    (["--lr-gamma", "0"], "--lr-gamma 0.0: must be positive"),
    (["--lr-gamma", "nan"], "--lr-gamma nan: expected a finite number"),
    (["--lr-gamma", "inf"], "--lr-gamma inf: expected a finite number"),
    (["--lr", "inf"], "--lr inf: expected a finite number"),
    (["--lr", "0"], "--lr 0.0: must be positive"),
    (["--clip-grad-norm", "inf"], "--clip-grad-norm inf: expected a finite number"),
    (["--width-mult", "inf"], "--width-mult inf: expected a finite number"),
    (["--cagrad-c", "nan"], "--cagrad-c nan: expected a finite number"),
    (["--seed", "-1"], "--seed -1: expected an integer in 0..4294967295"),
    (["--seed", str(2 ** 32)], f"--seed {2 ** 32}: expected an integer in 0..4294967295"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
])
def test_bad_values_are_refused_naming_the_flag_and_no_folder_is_made(capsys, tmp_path, flags, named):
    err = refused(capsys, *flags, out=tmp_path / "runs")
    assert named in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, warning", [
    (["--weighting", "ew", "--pcgrad-seed", "3"], "--pcgrad-seed applies to --weighting pcgrad; ignored with --weighting ew"),
    (["--weighting", "pcgrad", "--tasks", "semantic"], "--weighting pcgrad combines several tasks"),
    (["--tasks", "depth", "--baseline", "b.json"], "--baseline b.json serves Δm, which a single-task run does not"),
])
def test_flags_without_effect_warn_but_are_accepted(capsys, flags, warning):
    main_cityscapes.parse_args(flags)
    assert f"warning: {warning}" in capsys.readouterr().err


def test_flags_with_effect_do_not_warn(capsys):
    main_cityscapes.parse_args(["--weighting", "pcgrad", "--pcgrad-seed", "3"])
    main_cityscapes.parse_args(["--weighting", "hydalearn", "--main-task", "depth"])
    assert "warning" not in capsys.readouterr().err
