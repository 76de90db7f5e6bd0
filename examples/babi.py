r"""Word-level bAbI (paper section 4.2): joint training on tasks 1-20, per-task test error.

    python examples/babi.py --data_dir=/path/to/tasks_1-20_v1-2 --version=en-10k \
        --model=mnm_p --train_steps=100000 --model_dir=runs/babi_mnm_p

Defaults from the paper's table 2 and appendix A: controller 256, memory 3 x 100,
d_k = d_v = 100, H = 3, batch 128, Adam 1e-3; one story per sequence, a ``-`` placeholder
per answer word, loss at the placeholders only. Stories of similar length are batched
together (geometric length buckets); the padding is masked (``Embedding(mask_zero=True)``):
padded steps neither write nor read any memory and count in no loss or metric. The task
loss is the mean cross-entropy over the answer words of a batch. The validation split is a
seeded 10% of each task's training stories; the model is selected on its answer-word
error (`examples.training.SelectBest`: the best evaluation's weights, training stops
after ``--patience`` evaluations without improvement), and the test errors are those of
the selected model. A question counts as right only if all its answer words are right; a
task fails above 5% error.

Every flag is a field of `Config`. Reruns resume from the last finished evaluation
(``--model_dir/backup``); a budget that is not a whole number of epochs ends with a shorter
epoch. Writes the run record ``--model_dir/metrics.json`` (`examples.training.RunRecorder`;
its ``results``: ``task_errors``, 20 test errors in percent, ``null`` for tasks not trained;
``mean_error``; ``failed_tasks``; ``selected_step`` and ``validation_word_error`` of the
selected model), ``--model_dir/results.md`` (table 3 layout: our errors beside the paper's
MNM-p, MNM-g, DNC and TPR-RNN), ``curve.png``, TensorBoard logs, the selected model
``model.keras`` (also ``best.weights.h5``, with ``best.json``) and its word list
``vocabulary.json`` (``{"version", "words"}``, word id = position; for
``examples/memory_pictures.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from mnm_keras import models
from mnm_keras._utils import derive_seed
from mnm_keras.datasets import babi
from mnm_keras.metrics import SymbolError

try:  # run as a script (python examples/babi.py) or as a module (-m)
    from examples import training
    from examples.config_flags import main, option
    from examples.paper import BABI_FAILED_ABOVE, PAPER_TABLE_3
except ImportError:  # pragma: no cover
    import training
    from config_flags import main, option
    from paper import BABI_FAILED_ABOVE, PAPER_TABLE_3

TASK_NAME = "babi"
SELECTION_METRIC = "val_word_error"


@dataclasses.dataclass(frozen=True)
class Config:
    """One joint bAbI run; every field is a flag of the same name."""

    data_dir: str | None = option(
        None, "The unpacked release (the folder with en/ and en-10k/); required."
    )
    version: str = option("en-10k", "1k or 10k training set.", choices=babi.VERSIONS)
    tasks: tuple[int, ...] = option(tuple(range(1, 21)), "Tasks, trained jointly.")
    model: str = option("mnm_p", "Model.", choices=models.MODEL_NAMES)
    train_steps: int = option(20000, "Maximum optimizer steps (early stopping may end sooner).")
    steps_per_epoch: int = option(500, "Steps between evaluations and checkpoints.")
    patience: int = option(
        10, "Early stopping: evaluations without a lower validation answer-word error."
    )
    batch_size: int = option(128, "Stories per step (paper: 128).")
    learning_rate: float = option(1e-3, "Adam learning rate (paper: 1e-3).")
    units: int = option(256, "Controller units and embedding size (paper: 256).")
    memory_units: int = option(100, "Memory width D_l (paper: 100).")
    memory_layers: int = option(3, "Memory layers (paper: 3).")
    key_size: int = option(100, "d_k = d_v (paper: 100).")
    num_heads: int = option(3, "Heads H (paper: 3).")
    normalize_writes: bool = option(
        True, "MNM: normalised writes (default); --nonormalize_writes: the paper's writes."
    )
    test_stories_per_task: int | None = option(
        None,
        "Evaluate only the first stories of each task's test file (quick checks; the "
        "paper's numbers use all of them).",
    )
    seed: int = option(0, "Seed of initialisation and shuffling.")
    model_dir: str = option("runs/babi", "Checkpoints, logs, the run record and the model.")

    def __post_init__(self):
        if not self.data_dir:
            raise ValueError(
                f"`data_dir` is required: the folder of {babi.OFFICIAL_RELEASE}, unpacked; "
                f"received data_dir={self.data_dir!r}."
            )
        for name in (
            "train_steps",
            "steps_per_epoch",
            "patience",
            "batch_size",
            "units",
            "memory_units",
            "memory_layers",
            "key_size",
            "num_heads",
        ):
            training.check_positive_int(name, getattr(self, name))
        if self.test_stories_per_task is not None:
            training.check_positive_int("test_stories_per_task", self.test_stories_per_task)
        if not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be positive; received learning_rate={self.learning_rate!r}."
            )
        if self.version not in babi.VERSIONS:
            raise ValueError(
                f"`version` must be one of {list(babi.VERSIONS)}; received {self.version!r}."
            )
        if self.model not in models.MODEL_NAMES:
            raise ValueError(
                f"`model` must be one of {list(models.MODEL_NAMES)}; received {self.model!r}."
            )
        tasks = tuple(self.tasks)
        if (
            not tasks
            or len(set(tasks)) != len(tasks)
            or not all(type(t) is int and t in babi.TASK_NAMES for t in tasks)
        ):
            raise ValueError(
                f"`tasks` must be distinct bAbI task ids in 1..20; received tasks={self.tasks!r}."
            )
        object.__setattr__(self, "tasks", tasks)  # a list given in Python becomes a tuple


def build_model(vocabulary_size, config, max_length=None):
    """Embedding -> recurrent core -> per-step word logits, compiled.

    Token id 0 (``<pad>``) is masked: at padded steps the recurrent core keeps its state
    (no memory write or read) and the loss and metrics count nothing. The loss is the mean
    cross-entropy over the answer positions (the sample weights), whatever the padding.

    ``max_length``: the longest story (SALU's table size; other models ignore it).
    """
    tokens = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(vocabulary_size, config.units, mask_zero=True)(tokens)
    features = models.recurrent_layer(
        config.model,
        units=config.units,
        memory_units=config.memory_units,
        memory_layers=config.memory_layers,
        key_size=config.key_size,
        value_size=config.key_size,
        num_heads=config.num_heads,
        max_length=max_length,
        return_sequences=True,
        seed=config.seed,
        normalize_writes=config.normalize_writes,
    )(embedded)
    network = keras.Model(tokens, keras.layers.Dense(vocabulary_size)(features))
    network.compile(
        keras.optimizers.Adam(config.learning_rate),
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        weighted_metrics=[SymbolError(name="word_error")],
    )
    return network


def task_errors(network, stories, vocabulary, batch_size):
    """Test error (%) per task: a question is right only if all its answer words are."""
    right, total = {}, {}
    index = babi.word_index(vocabulary)
    boundaries = babi.length_buckets([len(s.tokens) for s in stories])
    # Predict story by story group of equal bucket, keeping the stories' order.
    order = sorted(range(len(stories)), key=lambda i: len(stories[i].tokens))
    for start in range(0, len(order), batch_size):
        chunk = [stories[i] for i in order[start : start + batch_size]]
        width = next(b - 1 for b in boundaries if b > max(len(s.tokens) for s in chunk))
        inputs = np.zeros((len(chunk), width), np.int32)
        for row, story in enumerate(chunk):
            inputs[row, : len(story.tokens)] = babi.encode(story, index)[0]
        predicted = np.asarray(network.predict_on_batch(inputs)).argmax(-1)
        for row, story in enumerate(chunk):
            for positions, words in story.answers:
                ok = all(predicted[row, p] == index[w] for p, w in zip(positions, words))
                right[story.task] = right.get(story.task, 0) + int(ok)
                total[story.task] = total.get(story.task, 0) + 1
    return {task: 100.0 * (1 - right[task] / total[task]) for task in sorted(total)}


def failed_tasks(errors):
    """The tasks of ``{task: error %}`` that failed: error above `BABI_FAILED_ABOVE` (the
    paper's 5 %), in task order."""
    return [task for task, error in sorted(errors.items()) if error > BABI_FAILED_ABOVE]


def results_table(errors, model):
    """Markdown table in the layout of the paper's table 3."""
    columns = list(PAPER_TABLE_3)
    lines = [
        f"| Task | ours ({model}) | " + " | ".join(f"{c} (paper)" for c in columns) + " |",
        "| --- " * (len(columns) + 2) + "|",
    ]
    for task in range(1, 21):
        ours = errors.get(task)
        cell = "-" if ours is None else f"{ours:.1f}"
        paper = " | ".join(f"{PAPER_TABLE_3[c][task - 1]:g}" for c in columns)
        lines.append(f"| {task}: {babi.TASK_NAMES[task]} | {cell} | {paper} |")
    trained = [e for e in errors.values()]
    mean = f"{np.mean(trained):.2f}" if trained else "-"
    paper_means = " | ".join(f"{np.mean(PAPER_TABLE_3[c]):.2f}" for c in columns)
    lines.append(f"| Mean error | {mean} | {paper_means} |")
    failed = len(failed_tasks(errors))
    paper_failed = " | ".join(
        str(sum(e > BABI_FAILED_ABOVE for e in PAPER_TABLE_3[c])) for c in columns
    )
    lines.append(f"| Failed tasks (> {BABI_FAILED_ABOVE:g}%) | {failed} | {paper_failed} |")
    return "\n".join(lines) + "\n"


def run(config, verbose=1, callbacks=()):
    """Joint training on ``config.tasks`` with `fit`, then the per-task test errors.

    Args:
      callbacks: extra Keras callbacks for `fit`.

    Returns:
      The run record written to ``model_dir/metrics.json`` (`training.RunRecorder`); its
      ``results`` are ``task_errors`` (20 errors in percent, None for tasks not trained),
      ``mean_error`` and ``failed_tasks``; it has ``stopped_early`` when early stopping
      ended training (`training.RunRecorder.finish`).
    """
    # Missing data files are an error before anything is recorded (all 20 tasks: the
    # vocabulary is the release's).
    babi.check_release(config.data_dir, config.version)
    budget = training.plan_budget(config.model_dir, config.train_steps, config.steps_per_epoch)
    recorder = training.RunRecorder(config.model_dir, TASK_NAME, config, budget.done_steps)
    tasks = list(config.tasks)
    keras.utils.set_random_seed(config.seed)
    train_stories, validation_stories = babi.split_train(
        babi.read_split(config.data_dir, config.version, "train", tasks)
    )
    test_stories = babi.read_split(config.data_dir, config.version, "test", tasks)
    if config.test_stories_per_task is not None:
        test_stories = [
            s
            for t in tasks
            for s in [s for s in test_stories if s.task == t][: config.test_stories_per_task]
        ]
    # The vocabulary of all 20 tasks (train and test), so that runs on task subsets share it.
    vocabulary = babi.release_vocabulary(config.data_dir, config.version)
    lengths = [len(s.tokens) for s in train_stories + validation_stories + test_stories]
    boundaries = babi.length_buckets(lengths)
    # The stream ends with the budget (early stopping may end training before it).
    train_data = (
        babi.make_dataset(
            train_stories,
            vocabulary,
            config.batch_size,
            boundaries,
            shuffle_seed=derive_seed(config.seed, "training_shuffle"),
        )
        .repeat()
        .take(config.train_steps - budget.done_steps)
    )
    validation_data = babi.make_dataset(
        validation_stories, vocabulary, config.batch_size, boundaries
    )
    network = build_model(len(vocabulary), config, max_length=max(lengths))
    # Model selection on the validation set's answer-word error (appendix A: early
    # stopping on the development set); a run that already ran out of patience is only
    # restored and evaluated.
    select = training.SelectBest(config.model_dir, SELECTION_METRIC, config.patience)
    with training.closing_streams(), training.recording_divergence(recorder):
        network.fit(
            train_data,
            epochs=training.completed_epochs(config.model_dir)
            if select.has_stopped()
            else budget.epochs,
            steps_per_epoch=config.steps_per_epoch,
            validation_data=validation_data,
            callbacks=[
                *training.resumable_callbacks(config.model_dir, config.train_steps),
                select,
                *callbacks,
            ],
            verbose=verbose,
            shuffle=False,
        )
    # The trained model and its word ids, for examples/memory_pictures.py.
    network.save(os.path.join(config.model_dir, "model.keras"))
    with open(os.path.join(config.model_dir, "vocabulary.json"), "w") as f:
        json.dump({"version": config.version, "words": vocabulary}, f, indent=0)
    errors = task_errors(network, test_stories, vocabulary, config.batch_size)
    with open(os.path.join(config.model_dir, "results.md"), "w") as f:
        f.write(results_table(errors, config.model))
    return recorder.finish(
        {
            "task_errors": [errors.get(t) for t in range(1, 21)],
            "mean_error": float(np.mean(list(errors.values()))),
            "failed_tasks": failed_tasks(errors),
            **selected(config.model_dir, select),
        },
        {
            "train answer-word error": lambda row: row["word_error"],
            "validation answer-word error": lambda row: row["val_word_error"],
        },
        title=f"bAbI {config.version}, {config.model}",
        ylabel="error",
        model=network,
        stopped_early=select.has_stopped(),
    )


def selected(model_dir, select):
    """``selected_step`` (the optimizer step) and ``validation_word_error`` of the model
    that `training.SelectBest` selected."""
    best = select.best()
    if best is None:  # no finite validation error
        return {"selected_step": None, "validation_word_error": None}
    steps = {row["epoch"]: row.get("step") for row in training.read_history(model_dir)}
    step = steps.get(best["epoch"])
    return {
        "selected_step": None if step is None else int(step),
        "validation_word_error": best["value"],
    }


def summary(record):
    """The results table (``results.md``), then one line of the run's totals."""
    config, results = record["config"], record["results"]
    errors = {t: e for t, e in enumerate(results["task_errors"], 1) if e is not None}
    return (
        f"{results_table(errors, config['model'])}\n"
        f"mean error {results['mean_error']:.2f}%, failed tasks {results['failed_tasks']}, "
        f"{record['train_steps']} steps, {record['wall_seconds']:.0f} s. "
        f"{config['model_dir']}/metrics.json"
    )


if __name__ == "__main__":
    main(Config, run, summary)
