"""evaluation.figures: colour by weighting, line style and marker by method, one legend."""
import numpy as np

from evaluation.figures import Curve, Panel, _layout, _styles, plot_curves


def curves(weightings, methods=("adam", "adam_with_adatask")):
    values = {"miou": np.arange(15.0).reshape(3, 5)}
    return [Curve(m, w, values) for w in weightings for m in methods] + [Curve("single-task", None, values)]


def test_a_weightings_methods_share_its_colour_and_differ_in_line_style():
    styles, colour, look = _styles(curves(("ew", "pcgrad")))
    ew_adam, ew_adatask = styles[("adam", "ew")], styles[("adam_with_adatask", "ew")]
    assert ew_adam["color"] == ew_adatask["color"] != styles[("adam", "pcgrad")]["color"]
    assert (ew_adam["linestyle"], ew_adam["marker"]) == (styles[("adam", "pcgrad")]["linestyle"], "o")
    assert (ew_adatask["linestyle"], ew_adatask["marker"]) == ("--", "s")
    assert styles[("single-task", None)]["color"] == "black" and list(look) == ["adam", "adam_with_adatask"]
    # Past the six colour-blind-safe colours, eight weightings still get eight colours.
    _, colour, _ = _styles(curves([f"w{i}" for i in range(8)]))
    assert len(set(colour.values())) == 8


def test_layout_puts_a_task_per_column_and_the_legend_in_the_cells_left():
    names = [Panel(k, k) for k in ("miou", "pix_acc", "abs_err", "rel_err", "delta_m")]
    assert _layout(names) == [["miou", "abs_err", "delta_m"], ["pix_acc", "rel_err", "legend"]]
    assert _layout(names[:4]) == [["miou", "abs_err", "legend"], ["pix_acc", "rel_err", "legend"]]


def test_the_same_curves_draw_the_same_png(tmp_path):
    for name in ("a.png", "b.png"):
        plot_curves(tmp_path / name, "t", [Panel("miou", "mIoU (%) ↑")], curves(("ew", "pcgrad")), window=3)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
