"""The paper's published numbers that the examples and the docs set beside ours.

Light on purpose (no TensorFlow, no Keras): `examples.results` renders the docs with it.
"""

from __future__ import annotations

# bAbI: a task fails when its test error is above this (%), as in the paper's tables 1 and 3.
BABI_FAILED_ABOVE = 5.0

# The paper's table 3, bAbI en-10k (best run per task of 20-task joint training, error %):
# one row per task 1..20.
_TABLE_3_COLUMNS = ("DNC", "TPR-RNN", "MNM-g", "MNM-p")
_TABLE_3_ROWS = (
    (0, 0, 0, 0),
    (0.4, 0.4, 0.2, 0.1),
    (1.8, 3.4, 1.8, 0.9),
    (0, 0.2, 0, 0),
    (0.8, 1.0, 0.4, 0.3),
    (0, 0.1, 0, 0),
    (0.6, 1.0, 0.2, 0.3),
    (0.3, 0.5, 0.2, 0),
    (0.2, 0.3, 0, 0),
    (0.2, 0.4, 0.1, 0),
    (0, 1.3, 0, 0),
    (0, 0.2, 0, 0),
    (0, 2.1, 0, 0),
    (0.4, 0.2, 0.5, 0.1),
    (0, 0, 0, 0),
    (55.1, 0.4, 51.2, 0.7),
    (12.0, 0.6, 0, 0),
    (0.8, 0, 0, 0.2),
    (3.9, 4.2, 0.7, 0.9),
    (0, 0, 0, 0),
)
# Column name -> the 20 errors in task order.
PAPER_TABLE_3 = {
    column: [row[i] for row in _TABLE_3_ROWS] for i, column in enumerate(_TABLE_3_COLUMNS)
}
