r"""Does a model trained on dictionary inference write, keep and address its memory?

    python examples/dictionary_memory.py --model_dir=runs/dict_4_1_mnm_g

Loads an MNM run of ``examples/algorithmic.py --task=dictionary`` (its configuration from
the ``config`` of its run record ``--model_dir/metrics.json``, its weights from the last
checkpoint ``--model_dir/backup``),
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

Every flag is a field of `Config`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from mnm_keras import MNM, core, memory
from mnm_keras.interactions import trace_interactions

try:  # run as a script (python examples/dictionary_memory.py) or as a module (-m)
    from examples import algorithmic, training
    from examples.config_flags import main, option
except ImportError:  # pragma: no cover
    import algorithmic
    import training
    from config_flags import main, option


@dataclasses.dataclass(frozen=True)
class Config:
    """What to diagnose; every field is a flag of the same name."""

    model_dir: str | None = option(
        None, "An examples/algorithmic.py run of the dictionary task (MNM); required."
    )
    episodes: int = option(64, "Fresh episodes to diagnose (at least 2).")
    seed: int = option(7, "Seed of the episodes.")

    def __post_init__(self):
        if not self.model_dir:
            raise ValueError(
                "`model_dir` is required: an examples/algorithmic.py dictionary run; "
                f"received model_dir={self.model_dir!r}."
            )
        training.check_positive_int("episodes", self.episodes)
        if self.episodes < 2:
            raise ValueError(
                "`episodes` must be at least 2 (the read-out is swapped with another "
                f"episode's); received episodes={self.episodes}."
            )


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


def run(config):
    """The three diagnostics of the module docstring for the run in ``config.model_dir``.

    Returns:
      A dict: ``config`` (the fields of ``config``), ``run`` (the diagnosed run's config,
      from its record) and ``results``: the floats ``written`` (median ratio over support
      steps and episodes), ``kept`` (mean relative recall error at the end of the support
      set), ``error`` and ``swapped_error`` (fractions of wrong answer letters),
      ``sequence_error`` (fraction of episodes with a wrong answer letter), and
      ``error_by_occurrences`` / ``error_by_last_example``: `error_by` dicts of the answer
      letters grouped by `query_letter_context`.

    Raises:
      ValueError: ``model_dir`` does not hold an MNM run of the dictionary task.
    """
    model_dir, episodes, seed = config.model_dir, config.episodes, config.seed
    with open(os.path.join(model_dir, "metrics.json")) as f:
        record = json.load(f)
    trained = record.get("config", {})
    if (
        record.get("task") != "algorithmic"
        or trained.get("task") != "dictionary"
        or trained.get("model") not in ("mnm_p", "mnm_g")
    ):
        raise ValueError(
            f"`model_dir` must hold an MNM run of the dictionary task; {model_dir} has "
            f"task={trained.get('task', record.get('task'))!r}, "
            f"model={trained.get('model')!r}."
        )
    trained_config = algorithmic.Config(**trained)
    task = algorithmic.make_task(trained_config)
    network = algorithmic.build_model(task, trained_config)
    training.warm_start(network, model_dir, argument="model_dir")
    layer = next(layer for layer in network.layers if isinstance(layer, MNM))
    inputs, targets, _ = task.arrays(episodes, seed=seed)
    inputs = inputs.astype("float32")
    trace = {name: np.asarray(value) for name, value in trace_interactions(layer, inputs).items()}
    support_end = task.support_length
    cell = layer.cell
    cell_config, params = cell.config, cell.params()
    activations = (cell_config.memory_activation, cell_config.memory_output_activation)
    logits_layer = network.get_layer("logits")
    after = {}  # step -> the state after it

    def on_step(t, x_t, before, state, interactions):
        after[t] = state

    state = core.initial_state(cell_config, params, episodes)
    outputs, _ = core.unroll(cell_config, params, inputs, state, on_step=on_step)
    end_weights = after[support_end - 1].memory  # the memory at the end of the support
    errors = {"error": [], "swapped_error": []}
    n = task.sequence_length
    for t in range(task.length - n, task.length):
        # The same output with the read-out v^r_t of episode b - 1 instead.
        swapped = core.output(cell_config, params, after[t].h, np.roll(after[t].read, 1, 0))
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
    results = {
        "written": float(np.median(ratio)),
        "kept": float(np.mean(np.stack(kept, 1)) / np.mean(value_norms)),
        **{name: float(np.mean(values)) for name, values in errors.items()},
        "sequence_error": float(np.mean(wrong.any(1))),
        "error_by_occurrences": error_by(occurrences, wrong),
        "error_by_last_example": error_by(last_example, wrong),
    }
    return {"config": dataclasses.asdict(config), "run": trained, "results": results}


def summary(diagnosis):
    """The diagnostics as markdown tables."""
    config, result = diagnosis["config"], diagnosis["results"]
    lines = [
        f"{config['model_dir']} ({config['episodes']} episodes, seed {config['seed']})",
        "| written (after / before) | kept (end / |v|^2) | answer error | "
        "answer error, read-out swapped |",
        "| --- | --- | --- | --- |",
        f"| {result['written']:.3f} | {result['kept']:.3f} | {result['error']:.3f} | "
        f"{result['swapped_error']:.3f} |",
        f"sequence error {result['sequence_error']:.4f}",
    ]
    for name, title in (
        ("error_by_occurrences", "occurrences of the query letter in the support sources"),
        ("error_by_last_example", "last support example holding the query letter"),
    ):
        lines += ["", f"| {title} | answer letters | answer error |", "| --- | --- | --- |"]
        for key, (count, rate) in result[name].items():
            lines.append(f"| {key} | {count} | {rate:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(Config, run, summary)
