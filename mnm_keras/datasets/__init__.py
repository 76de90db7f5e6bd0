"""Datasets of the paper's experiments."""

from mnm_keras.datasets import babi
from mnm_keras.datasets.algorithmic import (
    TASKS,
    AlgorithmicTask,
    DictionaryInference,
    DoubleCopy,
    PrioritySort,
    get_task,
)

__all__ = [
    "TASKS",
    "babi",
    "AlgorithmicTask",
    "DictionaryInference",
    "DoubleCopy",
    "PrioritySort",
    "get_task",
]
