"""Plots of training curves (PNG).

Uses matplotlib's object-oriented `Figure` directly, which needs no GUI backend, so importing
mnm_keras never changes the process's matplotlib backend.
"""

from __future__ import annotations

from matplotlib.figure import Figure


def split_label(item, argument, form, required=False):
    """Splits a command-line item ``LABEL=VALUE`` at its first ``=`` into (label, value).

    An item without ``=`` is ``(None, item)`` unless ``required``. ``argument`` (the flag's
    name) and ``form`` (e.g. ``"DIR or LABEL=DIR"``) word the error on a malformed item.
    """
    label, sep, value = item.partition("=")
    if not sep and not required:
        return None, item
    if not sep or not label or not value:
        raise ValueError(f"`{argument}` items must be {form}; received {item!r}.")
    return label, value


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
    figure = Figure(figsize=(11, 4) if log_panel else (6, 4), dpi=100)
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
