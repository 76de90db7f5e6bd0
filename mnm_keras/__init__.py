"""mnm_keras: Metalearned Neural Memory (Munkhdalai et al., NeurIPS 2019) for Keras 3.

Public API:

* `MNMCell`: the recurrent cell, ``keras.layers.RNN(MNMCell(...))``.
* `MNM`: the sequence layer that also adds the meta loss (equation 5) to the model.
* `SALUCell`: the LSTM + soft-attention look-up table baseline, and `SALU`, its
  sequence layer with a loop that does not keep every step's table.
* `memory`: the neural memory as pure TensorFlow functions (`read`, `gradient_write`,
  `local_write`, `recall_error`, `meta_loss`, `forward`), usable without the controller.
* `tasks`: small synthetic memory tasks (associative recall) used by the demo and tests.
"""

from mnm_keras import memory, tasks
from mnm_keras.memory import (
    forward,
    gradient_write,
    local_write,
    meta_loss,
    read,
    recall_error,
)
from mnm_keras.mnm_cell import MNMCell
from mnm_keras.mnm_layer import MNM
from mnm_keras.salu_cell import SALUCell, soft_attention_read
from mnm_keras.salu_layer import SALU

__version__ = "0.1.0"

__all__ = [
    "MNM",
    "MNMCell",
    "SALU",
    "SALUCell",
    "forward",
    "gradient_write",
    "local_write",
    "memory",
    "meta_loss",
    "read",
    "recall_error",
    "soft_attention_read",
    "tasks",
]
