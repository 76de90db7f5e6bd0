"""Heat maps of the memory's similarity maps (paper figure 5), with words on both axes (PNG).

Uses matplotlib's object-oriented `Figure` directly (no GUI backend, no process-wide
matplotlib setting changed), like `mnm_keras.plotting`.
"""

from __future__ import annotations

import numpy as np

from mnm_keras.plotting import _figure_class


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
