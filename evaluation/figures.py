"""The test-curves figure of a sweep: one panel per metric, one line per (method, weighting) row.

Colour = weighting, line style and marker = optimizer method: the question the sweeps ask is
what an optimizer (AdaTask or not) does to each weighting, so the two lines of one weighting
share a colour and differ in style, and a comparison within a weighting is one of adjacent,
same-coloured lines. Weightings are the more numerous factor, and colours stay apart for more
of them than line styles do; the markers keep the methods apart in greyscale print. Single-task
runs are black. Colours are Okabe and Ito's colour-blind-safe set (tab20 beyond six weightings).
"""
import math
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure  # no pyplot: the Agg canvas, no global backend state
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P")
SINGLE_TASK_STYLE = {"color": "black", "linestyle": (0, (1, 1)), "marker": None}
MARKERS_PER_LINE = 8  # beyond that markers crowd the line on long runs
WINDOW_COLOUR = "0.95"
STYLE = {"font.size": 8, "axes.labelsize": 8, "legend.fontsize": 7.5,
         "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False}
SIZE, DPI = (7.2, 4.6), 200  # a two-column paper's text width, in inches


@dataclass(frozen=True)
class Panel:
    key: str
    label: str  # the y axis: name, unit and which way is better, e.g. "mIoU (%) ↑"


@dataclass(frozen=True)
class Curve:
    """One line: a row's runs, or single-task runs (weighting None, drawn black)."""
    method: str
    weighting: str | None
    values: dict  # panel key → (seeds, epochs) array; panels without an entry get no line


def _styles(curves):
    """{(method, weighting): line style keywords}, colours by weighting and styles by method in
    their order of first appearance (the table's row order)."""
    weightings = list(dict.fromkeys(c.weighting for c in curves if c.weighting is not None))
    methods = list(dict.fromkeys(c.method for c in curves if c.weighting is not None))
    palette = OKABE_ITO if len(weightings) <= len(OKABE_ITO) else colormaps["tab20"].colors
    colour = {w: palette[i % len(palette)] for i, w in enumerate(weightings)}
    look = {m: {"linestyle": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)]}
            for i, m in enumerate(methods)}
    return {(c.method, c.weighting): SINGLE_TASK_STYLE if c.weighting is None
            else {"color": colour[c.weighting], **look[c.method]} for c in curves}, colour, look


def _legend(ax, curves, colour, look, window):
    """One legend for every panel, in its own cell: the weightings' colours, the methods' line
    styles, the single-task runs, then the shaded window (if any); a section's title is an entry
    without a line."""
    title = Line2D([], [], linestyle="none")
    entries = [(title, "Weighting (colour)")]
    entries += [(Line2D([], [], color=c, linewidth=3), w) for w, c in colour.items()]
    entries += [(title, "Method (line, marker)")]
    entries += [(Line2D([], [], color="0.3", **style), m) for m, style in look.items()]
    entries += [(Line2D([], [], **SINGLE_TASK_STYLE), c.method) for c in curves if c.weighting is None]
    if window is not None:
        entries += [(Patch(color=WINDOW_COLOUR), f"last {window} epochs (averaged in the tables)")]
    handles, labels = zip(*entries, strict=True)
    legend = ax.legend(handles, labels, loc="center left", frameon=False, handlelength=3.2,
                       ncols=1 if len(entries) <= 14 else 2)
    for text, handle in zip(legend.get_texts(), handles, strict=True):
        if handle is title:
            text.set_fontweight("bold")
    ax.axis("off")


def _layout(panels):
    """Panels column by column in two rows (mIoU over PixAcc, AbsErr over RelErr, ...); the cells
    left over hold the legend."""
    columns = math.ceil((len(panels) + 1) / 2)
    cells = [p.key for p in panels] + ["legend"] * (2 * columns - len(panels))
    return [[cells[2 * col + row] for col in range(columns)] for row in range(2)]


def plot_curves(path, title, panels, curves, window=None):
    """Draw the curves to `path` (PNG): per curve the mean over seeds per epoch and a min-max band
    over seeds. `window`: the last N epochs that the tables average, shaded where N is fewer
    than the epochs."""
    styles, colour, look = _styles(curves)
    epochs = max(values.shape[1] for curve in curves for values in curve.values.values())
    window = window if window is not None and window < epochs else None
    with rc_context(STYLE):
        fig = Figure(figsize=SIZE, layout="constrained")
        fig.suptitle(title)
        axes = fig.subplot_mosaic(_layout(panels))
        for panel in panels:
            ax = axes[panel.key]
            for curve in curves:
                values = curve.values.get(panel.key)
                if values is None:
                    continue
                x = np.arange(1, values.shape[1] + 1)
                style = styles[(curve.method, curve.weighting)]
                ax.plot(x, values.mean(axis=0), linewidth=1.3, markersize=3.5,
                        markevery=max(1, round(len(x) / MARKERS_PER_LINE)), **style)
                if len(values) > 1:
                    ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=style["color"], alpha=0.12,
                                    linewidth=0)
            if window is not None:
                ax.axvspan(epochs - window + 0.5, epochs + 0.5, color=WINDOW_COLOUR, zorder=0, linewidth=0)
            ax.set(xlabel="epoch", ylabel=panel.label, xlim=(0.7, epochs + 0.3))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3, linewidth=0.5)
        _legend(axes["legend"], curves, colour, look, window)
        fig.savefig(path, dpi=DPI)
