"""Plots of the examples (PNG): training curves, the maze's rewards, and heat maps of the
memory's similarity maps (paper figure 5).

Uses matplotlib's object-oriented `Figure` directly, which needs no GUI backend, so that no
process-wide matplotlib setting changes. matplotlib (the ``examples`` extra) is imported
only when a plot is drawn.
"""

from __future__ import annotations

import numpy as np


def _figure_class():
    """matplotlib's `Figure`, or an ImportError that names the extra that provides it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "the plots of examples/ need matplotlib: pip install 'mnm_keras[examples]'"
        ) from error
    return Figure


def plot_curves(
    path, steps, curves, title="", xlabel="step", ylabel="", reference=None, log_panel=False
):
    """Writes a line plot of ``curves`` (name -> values over ``steps``) to ``path``.

    Args:
      path: the PNG file to write.
      steps: x values shared by every curve, or a dict from label to each curve's own.
      curves: dict from legend label to a list of y values (same length as ``steps``).
      reference: optional ``(label, y)``, drawn as a dashed horizontal line (e.g. chance).
      log_panel: also draw the curves on a second panel with a log y axis (symmetric log,
        linear below 1e-3 so that zeros stay visible), for errors that end near zero.

    Returns:
      The matplotlib `Figure` (already saved).
    """
    figure = _figure_class()(figsize=(11, 4) if log_panel else (6, 4), dpi=100)
    panels = figure.subplots(1, 2 if log_panel else 1, squeeze=False)[0]
    for axes in panels:
        for label, values in curves.items():
            x = steps[label] if isinstance(steps, dict) else steps
            axes.plot(x, values, marker="o", markersize=3, label=label)
        if reference is not None:
            axes.axhline(reference[1], linestyle="--", color="grey", label=reference[0])
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
    panels[0].legend()
    if log_panel:
        panels[1].set_yscale("symlog", linthresh=1e-3)
        panels[1].set_title(f"{title} (log scale)" if title else "log scale")
    figure.tight_layout()
    figure.savefig(path)
    return figure


def plot_panels(path, panels, shared=None, title="", xlabel="step", ylabel="", xscale="linear"):
    """Writes one line plot per panel, side by side with a shared y axis, to ``path``.

    Args:
      path: the PNG file to write.
      panels: dict from panel title to its curves, a dict from legend label to ``(x, y)``
        or ``(x, y, style)``, ``style`` a dict of matplotlib line properties (``color``,
        ``linestyle``, ...).
      shared: optional curves drawn in every panel, dashed and grey (e.g. a baseline), a
        dict from legend label to ``(x, y)``.
      title: the figure's title, above the panels.
      xscale: the x axes' scale, "linear" or "log".

    Returns:
      The matplotlib `Figure` (already saved).
    """
    if not panels:
        raise ValueError("`panels` must hold at least one panel; received panels={}.")
    figure = _figure_class()(figsize=(4.2 * len(panels), 4), dpi=100)
    axes_row = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for axes, (name, curves) in zip(axes_row, panels.items()):
        for label, (x, y, *style) in curves.items():
            axes.plot(x, y, marker="o", markersize=2, label=label, **(style[0] if style else {}))
        for label, (x, y) in (shared or {}).items():
            axes.plot(x, y, linestyle="--", color="grey", label=label)
        axes.set_xscale(xscale)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    axes_row[0].set_ylabel(ylabel)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return figure


def plot_maze_rewards(
    path, runs, window=500, evaluations=None, title="Grid maze 9 x 9 (A2C)", reference=None
):
    """Writes the reward curves of maze runs (`examples.maze_training.train`) to ``path``.

    Args:
      path: the PNG file to write.
      runs: dict from legend label to a list of per-episode training reward arrays, one per
        seed: a moving average (over the last ``window`` episodes, fewer at the start) per
        label, or with several seeds their median and inter-quartile range over the
        episodes that every seed has.
      window: the moving average's window, in episodes.
      evaluations: optional dict from legend label to ``(episodes, rewards)``, drawn as
        points joined by lines (e.g. the held-out rewards of the greedy and the sampling
        policy, from a run's history rows).
      reference: optional ``(label, y)``, drawn as a dashed horizontal line (e.g. the
        random policy's reward).

    Returns:
      The matplotlib `Figure` (already saved).
    """
    import numpy as np

    def moving_average(values):
        values = np.asarray(values, dtype=np.float64)
        sums = np.cumsum(np.insert(values, 0, 0.0))
        index = np.arange(1, len(values) + 1)
        start = np.maximum(index - window, 0)
        return (sums[index] - sums[start]) / (index - start)

    figure = _figure_class()(figsize=(6.5, 4), dpi=100)
    axes = figure.subplots()
    for label, seeds in runs.items():
        length = min(len(r) for r in seeds) if seeds else 0
        if length == 0:
            continue
        curves = np.stack([moving_average(np.asarray(r)[:length]) for r in seeds])
        episodes = np.arange(1, length + 1)
        if len(seeds) == 1:
            axes.plot(episodes, curves[0], label=label)
        else:
            low, median, high = np.percentile(curves, [25, 50, 75], axis=0)
            (line,) = axes.plot(episodes, median, label=f"{label} (median of {len(seeds)})")
            axes.fill_between(episodes, low, high, color=line.get_color(), alpha=0.25)
    for label, (episodes, values) in (evaluations or {}).items():
        axes.plot(episodes, values, marker="o", markersize=3, label=label)
    if reference is not None:
        axes.axhline(reference[1], linestyle="--", color="grey", label=reference[0])
    axes.set_title(title)
    axes.set_xlabel("episode")
    axes.set_ylabel(f"reward per episode (training: mean of the last {window})")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    return figure


def _window(window, length, argument):
    if window is None:
        return 0, length
    start, stop = window
    if not 0 <= start < stop <= length:
        raise ValueError(
            f"`{argument}` must be (start, stop) with 0 <= start < stop <= {length}; "
            f"received {argument}={window!r}."
        )
    return start, stop


def plot_similarity_map(path, matrix, words, title="", rows=None, columns=None):
    """Writes one similarity map as a PNG heat map, the sequence's words on both axes.

    Rows (y-axis, top to bottom) are the later step t2, columns (x-axis) the earlier step
    t1, as in the paper's figure 5; brighter is more similar. NaN cells (t1 not earlier
    than t2) are drawn white. The colour scale spans the shown values, and a colour bar
    gives it.

    Args:
      path: the PNG file to write.
      matrix: ``[time, time]`` array (e.g. from `mnm_keras.interactions.similarity_maps`).
      words: the ``time`` tokens of the sequence, one per step.
      title: the figure title.
      rows: optional ``(start, stop)`` steps to show on the y-axis (default all).
      columns: optional ``(start, stop)`` steps to show on the x-axis (default all).

    Returns:
      The matplotlib `Figure` (already written to ``path``).
    """
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"`matrix` must be [time, time]; received shape {matrix.shape}.")
    if len(words) != matrix.shape[0]:
        raise ValueError(
            f"`words` must hold one word per step ({matrix.shape[0]}); received {len(words)}."
        )
    row_start, row_stop = _window(rows, matrix.shape[0], "rows")
    column_start, column_stop = _window(columns, matrix.shape[1], "columns")
    shown = matrix[row_start:row_stop, column_start:column_stop]
    row_words = list(words[row_start:row_stop])
    column_words = list(words[column_start:column_stop])

    cell_inches = 0.16
    width = min(max(4.0, 2.5 + cell_inches * len(column_words)), 60.0)
    height = min(max(3.0, 1.8 + cell_inches * len(row_words)), 60.0)
    import matplotlib

    figure = _figure_class()(figsize=(width, height), dpi=100)
    axes = figure.subplots()
    finite = shown[np.isfinite(shown)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    if low == high:
        low, high = low - 1e-6, high + 1e-6
    image = axes.imshow(
        np.ma.masked_invalid(shown),
        cmap=matplotlib.colormaps["viridis"].with_extremes(bad="white"),
        vmin=low,
        vmax=high,
        interpolation="nearest",
        aspect="auto",
    )
    axes.set_xticks(range(len(column_words)))
    axes.set_xticklabels(column_words, rotation=90, fontsize=7)
    axes.set_yticks(range(len(row_words)))
    axes.set_yticklabels(row_words, fontsize=7)
    axes.set_xlabel("earlier step t1")
    axes.set_ylabel("later step t2")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="cosine similarity", fraction=0.03, pad=0.02)
    figure.tight_layout()
    figure.savefig(path)
    return figure
