r"""Word-level bAbI (paper section 4.2): joint training on tasks 1-20, per-task test error.

    python examples/babi.py --data_dir=/path/to/tasks_1-20_v1-2 --version=en-10k \
        --model=mnm_p --train_steps=100000 --model_dir=runs/babi_mnm_p

Defaults from the paper's table 2 and appendix A: controller 256, memory 3 x 100,
d_k = d_v = 100, H = 3, batch 128, Adam 1e-3; one story per sequence, a ``-`` placeholder
per answer word, loss at the placeholders only. Stories of similar length are batched
together (geometric length buckets). The validation split is a seeded 10% of each task's
training stories; early stopping watches its loss (``--patience`` evaluations) and keeps the
best weights. A question counts as right only if all its answer words are right; a task
fails above 5% error.

Writes ``--model_dir/metrics.json`` (``task_errors``: 20 test errors in percent, ``null``
for tasks not trained; ``mean_error``; ``failed_tasks``; ``train_steps``; ``wall_seconds``),
``--model_dir/results.md`` (table 3 layout: our errors beside the paper's MNM-p, MNM-g,
DNC and TPR-RNN), ``curve.png``, TensorBoard logs, the trained model ``model.keras`` (the
best weights early stopping saw) and its word list ``vocabulary.json`` (``{"version",
"words"}``, word id = position; for ``examples/memory_pictures.py``). Reruns resume from the
last finished evaluation (``--model_dir/backup``).
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
from absl import app, flags

from mnm_keras import models, training
from mnm_keras.datasets import babi
from mnm_keras.metrics import SymbolError

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_string("data_dir", None, "The unpacked release (folder with en/ and en-10k/).")
    flags.DEFINE_enum("version", "en-10k", list(babi.VERSIONS), "1k or 10k training set.")
    flags.DEFINE_list("tasks", [str(t) for t in range(1, 21)], "Tasks, trained jointly.")
    flags.DEFINE_enum("model", "mnm_p", list(models.MODEL_NAMES), "Model.")
    flags.DEFINE_integer("train_steps", 20000, "Maximum optimizer steps.")
    flags.DEFINE_integer("steps_per_epoch", 500, "Steps between evaluations and checkpoints.")
    flags.DEFINE_integer("patience", 10, "Early stopping: evaluations without improvement.")
    flags.DEFINE_integer("batch_size", 128, "Stories per step (paper: 128).")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (paper: 1e-3).")
    flags.DEFINE_integer("units", 256, "Controller units and embedding size (paper: 256).")
    flags.DEFINE_integer("memory_units", 100, "Memory width (paper: 100).")
    flags.DEFINE_integer("key_size", 100, "d_k = d_v (paper: 100).")
    flags.DEFINE_integer("num_heads", 3, "Heads H (paper: 3).")
    flags.DEFINE_bool("normalize_writes", False, "MNM: normalised writes (not in the paper).")
    flags.DEFINE_integer("seed", 0, "Seed.")
    flags.DEFINE_string("model_dir", "runs/babi", "Checkpoints, logs, metrics.")


# The paper's table 3 (best run per task, error %), in task order 1..20.
PAPER_TABLE_3 = {
    "DNC": [0, 0.4, 1.8, 0, 0.8, 0, 0.6, 0.3, 0.2, 0.2, 0, 0, 0, 0.4, 0, 55.1, 12.0, 0.8, 3.9, 0],
    "TPR-RNN": [
        0,
        0.4,
        3.4,
        0.2,
        1.0,
        0.1,
        1.0,
        0.5,
        0.3,
        0.4,
        1.3,
        0.2,
        2.1,
        0.2,
        0,
        0.4,
        0.6,
        0,
        4.2,
        0,
    ],  # fmt: skip
    "MNM-g": [0, 0.2, 1.8, 0, 0.4, 0, 0.2, 0.2, 0, 0.1, 0, 0, 0, 0.5, 0, 51.2, 0, 0, 0.7, 0],
    "MNM-p": [0, 0.1, 0.9, 0, 0.3, 0, 0.3, 0, 0, 0, 0, 0, 0, 0.1, 0, 0.7, 0, 0.2, 0.9, 0],
}


def build_model(vocabulary_size, model, units, memory_units, key_size, num_heads, max_length,
                seed, learning_rate, normalize_writes=False):  # fmt: skip
    """Embedding -> recurrent core -> per-step word logits, compiled."""
    tokens = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(vocabulary_size, units)(tokens)
    features = models.recurrent_layer(
        model,
        units=units,
        memory_units=memory_units,
        key_size=key_size,
        value_size=key_size,
        num_heads=num_heads,
        max_length=max_length,
        return_sequences=True,
        seed=seed,
        normalize_writes=normalize_writes,
    )(embedded)
    network = keras.Model(tokens, keras.layers.Dense(vocabulary_size)(features))
    network.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
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
    failed = sum(e > 5 for e in trained)
    paper_failed = " | ".join(str(sum(e > 5 for e in PAPER_TABLE_3[c])) for c in columns)
    lines.append(f"| Failed tasks (> 5%) | {failed} | {paper_failed} |")
    return "\n".join(lines) + "\n"


def train_and_evaluate(
    data_dir,
    model_dir,
    version="en-10k",
    tasks=tuple(range(1, 21)),
    model="mnm_p",
    train_steps=20000,
    steps_per_epoch=500,
    patience=10,
    batch_size=128,
    learning_rate=1e-3,
    units=256,
    memory_units=100,
    key_size=100,
    num_heads=3,
    seed=0,
    verbose=1,
    test_stories_per_task=None,
    normalize_writes=False,
):
    """Joint training on ``tasks``; returns the metrics written to ``metrics.json``.

    ``test_stories_per_task`` evaluates only the first stories of each task's test file
    (for quick checks; the paper's numbers use all of them). ``normalize_writes`` is
    `mnm_keras.MNMCell`'s argument (MNM models only).
    """
    training.check_budget(model_dir, train_steps, steps_per_epoch)
    tasks = [int(t) for t in tasks]
    keras.utils.set_random_seed(seed)
    train_stories, validation_stories = babi.split_train(
        babi.read_split(data_dir, version, "train", tasks)
    )
    test_stories = babi.read_split(data_dir, version, "test", tasks)
    if test_stories_per_task is not None:
        test_stories = [
            s
            for t in tasks
            for s in [s for s in test_stories if s.task == t][:test_stories_per_task]
        ]
    # The vocabulary of all 20 tasks (train and test), so that runs on task subsets share it.
    vocabulary = babi.release_vocabulary(data_dir, version)
    lengths = [len(s.tokens) for s in train_stories + validation_stories + test_stories]
    boundaries = babi.length_buckets(lengths)
    train_data = babi.make_dataset(
        train_stories, vocabulary, batch_size, boundaries, shuffle_seed=seed
    ).repeat()
    validation_data = babi.make_dataset(validation_stories, vocabulary, batch_size, boundaries)
    network = build_model(
        len(vocabulary), model, units, memory_units, key_size, num_heads, max(lengths),
        seed, learning_rate, normalize_writes,
    )  # fmt: skip
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    start = time.time()
    network.fit(
        train_data,
        epochs=train_steps // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation_data,
        callbacks=[*training.resumable_callbacks(model_dir), stop],
        verbose=verbose,
        shuffle=False,
    )
    wall_seconds = time.time() - start
    # The trained model and its word ids, for examples/memory_pictures.py.
    network.save(os.path.join(model_dir, "model.keras"))
    with open(os.path.join(model_dir, "vocabulary.json"), "w") as f:
        json.dump({"version": version, "words": vocabulary}, f, indent=0)
    errors = task_errors(network, test_stories, vocabulary, batch_size)
    history = training.read_history(model_dir)
    metrics = {
        "model": model,
        "version": version,
        "tasks": tasks,
        "task_errors": [errors.get(t) for t in range(1, 21)],
        "mean_error": float(np.mean(list(errors.values()))),
        "failed_tasks": [t for t, e in errors.items() if e > 5.0],
        "train_steps": len(history) * steps_per_epoch,
        "max_train_steps": train_steps,
        "batch_size": batch_size,
        "seed": seed,
        "normalize_writes": normalize_writes,
        "wall_seconds": round(wall_seconds, 1),
    }
    with open(os.path.join(model_dir, "results.md"), "w") as f:
        f.write(results_table(errors, model))
    return training.finish_run(
        model_dir,
        metrics,
        steps_per_epoch,
        {
            "train answer-word error": lambda row: row["word_error"],
            "validation answer-word error": lambda row: row["val_word_error"],
        },
        title=f"bAbI {version}, {model}",
        ylabel="error",
    )


def main(argv):
    del argv
    if not FLAGS.data_dir:
        raise app.UsageError(f"--data_dir is required: the folder of {babi.OFFICIAL_RELEASE}.")
    metrics = train_and_evaluate(
        FLAGS.data_dir,
        FLAGS.model_dir,
        version=FLAGS.version,
        tasks=FLAGS.tasks,
        model=FLAGS.model,
        train_steps=FLAGS.train_steps,
        steps_per_epoch=FLAGS.steps_per_epoch,
        patience=FLAGS.patience,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        units=FLAGS.units,
        memory_units=FLAGS.memory_units,
        key_size=FLAGS.key_size,
        num_heads=FLAGS.num_heads,
        seed=FLAGS.seed,
        normalize_writes=FLAGS.normalize_writes,
    )
    print(open(os.path.join(FLAGS.model_dir, "results.md")).read())
    print(
        f"mean error {metrics['mean_error']:.2f}%, failed tasks {metrics['failed_tasks']}, "
        f"{metrics['train_steps']} steps, {metrics['wall_seconds']:.0f} s"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
