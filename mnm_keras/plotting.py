"""Plots of training curves (PNG).

Uses matplotlib's object-oriented `Figure` directly, which needs no GUI backend, so importing
mnm_keras never changes the process's matplotlib backend. matplotlib is an optional
dependency (the ``examples`` extra) and is imported only when a plot is drawn, so that
``import mnm_keras.plotting`` works without it.
"""

from __future__ import annotations


def _figure_class():
    """matplotlib's `Figure`, or an ImportError that names the extra that provides it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "mnm_keras.plotting needs matplotlib: pip install 'mnm_keras[examples]'"
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


def plot_maze_rewards(
    path, runs, window=500, evaluations=None, title="Grid maze 9 x 9 (A2C)", reference=None
):
    """Writes the reward curves of maze runs (`tf_agents_ext.training.train`) to ``path``.

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
