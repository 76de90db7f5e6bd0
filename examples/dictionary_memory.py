r"""Does a model trained on dictionary inference write, keep and address its memory?

    python examples/dictionary_memory.py --model_dir=runs/dict_4_1_mnm_g

Loads an MNM run of ``examples/algorithmic.py --task=dictionary`` (its configuration from
``--model_dir/metrics.json``, its weights from the last checkpoint ``--model_dir/backup``),
runs it over ``--episodes`` fresh episodes (`mnm_keras.interactions.trace_interactions`)
and prints three diagnostics of the support set ``s_j EOS F(s_j) SEP ...``, the pairs the
model must store and later look up:

* **written**: ``recall_after / recall_before``, the recall error of each support step's
  write pair just after its write over the error just before it (0: stored exactly; 1: the
  write changed nothing at its own key);
* **kept**: the recall error of each support step's pair at the end of the support set,
  over ``||v^w||^2`` (0: still stored; about 1 or more: overwritten or never stored);
* **used**: the answer error of the model as it is, and with the memory's read-out at the
  answer steps swapped for another episode's (the read values of episode b - 1, same step;
  the controller state unchanged). If the answers come from the memory, the swapped error
  rises towards chance; if the controller answers without it, the two errors are equal.

It also splits the answer error by what the support set held of each query letter: how
many times the letter occurs among the support sources, and in which support example it
last occurs (1 = the first example written, k = the last): are the wrong answers the
letters seen once, or the ones written earliest?
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from examples import algorithmic
from mnm_keras import MNM, core, memory, training
from mnm_keras.datasets.algorithmic import DictionaryInference
from mnm_keras.interactions import trace_interactions

FLAGS = flags.FLAGS
SIZES = ("units", "memory_units", "memory_layers", "key_size", "num_heads")


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_string("model_dir", None, "An examples/algorithmic.py dictionary run.")
    flags.DEFINE_integer("episodes", 64, "Episodes to diagnose.")
    flags.DEFINE_integer("seed", 7, "Seed of the episodes.")
    flags.DEFINE_integer("memory_layers", None, "Override (runs whose metrics.json lacks it).")
    flags.mark_flag_as_required("model_dir")


def query_letter_context(inputs, task):
    """Where each answer's query letter occurs in the support set.

    Args:
      inputs: ``[B, T, 30]`` one-hot episodes of ``task`` (a `DictionaryInference`).
      task: the episodes' task, support size k and sequence length l.

    Returns:
      ``(occurrences, last_example)``, int arrays ``[B, l]``: for the query's i-th letter,
      how many times it occurs among the k support sources, and the 1-based index of the
      last support example whose source contains it (0 if none).
    """
    k, n, end = task.support_size, task.sequence_length, task.support_length
    symbols = np.argmax(inputs, -1)  # [B, T]
    sources = symbols[:, :end].reshape(-1, k, 2 * n + 2)[:, :, :n]  # [B, k, l]
    query = symbols[:, end : end + n]  # [B, l]
    matches = sources[:, None, :, :] == query[:, :, None, None]  # [B, l, k, l]
    occurrences = matches.sum((2, 3))
    in_example = matches.any(3)  # [B, l, k]
    last_example = np.where(in_example.any(2), k - np.argmax(in_example[..., ::-1], 2), 0)
    return occurrences, last_example


def error_by(keys, wrong):
    """``{key: (answers, error rate)}`` of boolean ``wrong`` grouped by equal ``keys``."""
    keys, wrong = np.asarray(keys).ravel(), np.asarray(wrong).ravel()
    groups = {}
    for key in np.unique(keys):
        selected = wrong[keys == key]
        groups[int(key)] = (int(selected.size), float(np.mean(selected)))
    return groups


def diagnose(model_dir, episodes=64, seed=7, **overrides):
    """The three diagnostics of the module docstring for the run in ``model_dir``.

    Returns:
      A dict of floats: ``written`` (median ratio over support steps and episodes),
      ``kept`` (mean relative recall error at the end of the support set), ``error`` and
      ``swapped_error`` (fractions of wrong answer letters), ``sequence_error`` (fraction
      of episodes with a wrong answer letter), and ``error_by_occurrences`` /
      ``error_by_last_example``: `error_by` dicts of the answer letters grouped by
      `query_letter_context`.
    """
    with open(os.path.join(model_dir, "metrics.json")) as f:
        config = json.load(f)
    if config.get("task") != "dictionary" or config.get("model") not in ("mnm_p", "mnm_g"):
        raise ValueError(
            f"`model_dir` must hold an MNM run of the dictionary task; {model_dir} has "
            f"task={config.get('task')!r}, model={config.get('model')!r}."
        )
    # Runs older than the sizes in metrics.json used `build_model`'s defaults (table 2).
    sizes = {name: config[name] for name in SIZES if name in config}
    sizes.update({name: value for name, value in overrides.items() if value is not None})
    k, n = config["support_size"], config["sequence_length"]
    task = DictionaryInference(k, n)
    network = algorithmic.build_model(
        task, config["model"], **sizes, normalize_writes=config.get("normalize_writes", False)
    )
    training.warm_start(network, model_dir, argument="model_dir")
    layer = next(layer for layer in network.layers if isinstance(layer, MNM))
    inputs, targets, _ = task.arrays(episodes, seed=seed)
    inputs = inputs.astype("float32")
    trace = {name: np.asarray(value) for name, value in trace_interactions(layer, inputs).items()}
    support_end = task.support_length
    cell = layer.cell
    config, params = cell.config, cell.params()
    activations = (config.memory_activation, config.memory_output_activation)
    logits_layer = network.get_layer("logits")
    after = {}  # step -> the state after it

    def on_step(t, x_t, before, state, interactions):
        after[t] = state

    state = core.initial_state(config, params, episodes)
    outputs, _ = core.unroll(config, params, inputs, state, on_step=on_step)
    end_weights = after[support_end - 1].memory  # the memory at the end of the support
    errors = {"error": [], "swapped_error": []}
    for t in range(task.length - n, task.length):
        # The same output with the read-out v^r_t of episode b - 1 instead.
        swapped = core.output(config, params, after[t].h, np.roll(after[t].read, 1, 0))
        for name, features in (("error", outputs[:, t]), ("swapped_error", swapped)):
            predicted = np.argmax(logits_layer(features), -1)
            errors[name].append(predicted != targets[:, t])
    wrong = np.stack(errors["error"], 1)  # [B, l]
    occurrences, last_example = query_letter_context(inputs, task)
    kept = [
        memory.recall_error(
            end_weights, trace["write_keys"][:, s], trace["values"][:, s], *activations
        )
        for s in range(support_end)
    ]
    value_norms = np.sum(np.square(trace["values"][:, :support_end]), -1).mean(-1)  # [B, S]
    ratio = trace["recall_after"][:, :support_end] / np.maximum(
        trace["recall_before"][:, :support_end], 1e-12
    )
    return {
        "written": float(np.median(ratio)),
        "kept": float(np.mean(np.stack(kept, 1)) / np.mean(value_norms)),
        **{name: float(np.mean(values)) for name, values in errors.items()},
        "sequence_error": float(np.mean(wrong.any(1))),
        "error_by_occurrences": error_by(occurrences, wrong),
        "error_by_last_example": error_by(last_example, wrong),
    }


def main(argv):
    del argv
    result = diagnose(
        FLAGS.model_dir, FLAGS.episodes, FLAGS.seed, memory_layers=FLAGS.memory_layers
    )
    print(f"{FLAGS.model_dir} ({FLAGS.episodes} episodes, seed {FLAGS.seed})")
    print(
        "| written (after / before) | kept (end / |v|^2) | answer error | "
        "answer error, read-out swapped |"
    )
    print("| --- | --- | --- | --- |")
    print(
        f"| {result['written']:.3f} | {result['kept']:.3f} | {result['error']:.3f} | "
        f"{result['swapped_error']:.3f} |"
    )
    print(f"sequence error {result['sequence_error']:.4f}")
    for name, title in (
        ("error_by_occurrences", "occurrences of the query letter in the support sources"),
        ("error_by_last_example", "last support example holding the query letter"),
    ):
        print(f"\n| {title} | answer letters | answer error |\n| --- | --- | --- |")
        for key, (count, rate) in result[name].items():
            print(f"| {key} | {count} | {rate:.4f} |")


if __name__ == "__main__":
    define_flags()
    app.run(main)
