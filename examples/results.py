r"""The documentation's result tables and figures, rendered from committed run records.

Every training result in the docs comes from a run record,
``results/<task>/<run>/metrics.json`` (written by `examples.training.RunRecorder` and
copied there with ``collect``). The docs mark where a table goes:

    <!-- results table: NAME -->
    ... (written by this tool) ...
    <!-- end of results table -->

and a figure is ``docs/figures/NAME.png`` beside ``docs/figures/NAME.json``, the data it
plots. ``render`` rewrites both from the records; ``check`` (run by the test suite) fails
when the docs and the records differ::

    python -m examples.results collect runs/my_run results/algorithmic/my_run
    python -m examples.results render
    python -m examples.results check
    python -m examples.results compare OTHER  # a rerun's records beside the committed cells

A table cell holds one metric: the mean and standard deviation over the seeds of a
configuration, with the number of seeds and how many solved the task (zero held-out
error); the curves of training hold the intermediate errors.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import os
import re
import sys

import numpy as np

try:  # run as a script (python examples/results.py) or as a module (-m)
    from examples.paper import BABI_FAILED_ABOVE, PAPER_TABLE_3
except ImportError:  # pragma: no cover
    from paper import BABI_FAILED_ABOVE, PAPER_TABLE_3

DOCS = ("README.md", "docs")
TABLE = re.compile(
    r"(<!-- results table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end of results table -->)",
    re.S,
)
NO_RECORD = "No run of this table has a committed record yet."

# The training protocol a record was made under (``protocol`` in ``metrics.json``, written by
# `examples.training.RunRecorder`; records without it are protocol 1). Tables keep the
# protocols apart and mark the rows of older ones with OLD_MARK and a note.
PROTOCOL = 2
PROTOCOLS = {
    1: (
        "the task loss divided by the episode length (Keras's `sum_over_batch_size` over "
        "every step, so MNM's meta loss weighed 19-80x more than in equation 6), sub-seeds "
        "that repeated weight tensors across seeds, bAbI padding written to the memory and "
        "no stop on a non-finite loss"
    ),
    2: (
        "the task loss a mean over answer positions, sub-seeds derived from (seed, name), "
        "bAbI padding masked, non-finite training stopped"
    ),
}
OLD_MARK = "†"


@dataclasses.dataclass(frozen=True)
class Record:
    """One run record: where it lies and what its ``metrics.json`` holds."""

    path: str
    task: str
    config: dict
    results: dict
    train_steps: int
    wall_seconds: float
    history: list
    protocol: int = 1
    # ``{"step", "quantity", "message"}`` when training diverged (no results then):
    # `examples.training.RunRecorder.diverged`.
    diverged: dict | None = None
    # ``{"step"}`` when early stopping ended training (`examples.training.SelectBest`): the
    # run is over there, below its budget.
    stopped_early: dict | None = None

    @property
    def old(self):
        """Whether the record was made under an earlier training protocol than `PROTOCOL`."""
        return self.protocol < PROTOCOL

    @property
    def run(self):
        return os.path.basename(os.path.dirname(self.path))


# A run's per-evaluation log in its model_dir: one JSON object per line, each with its
# ``epoch`` (0, 1, ...), the ``step`` (maze: episode) it ended at, its ``epoch_seconds`` and
# what the run logged then. Written by `examples.training.HistoryLogger` (scripts that train
# with `fit`) and by the maze's loop (`examples.maze_training.train`).
HISTORY_FILE = "history.jsonl"


def read_history(model_dir):
    """The rows of ``model_dir``'s history (`HISTORY_FILE`), one per epoch, in order; [] if
    there is none. An epoch logged twice (a resumed run) keeps its last row."""
    path = os.path.join(model_dir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return parse_history(f)


def last_step(history):
    """The last ``step`` (maze: episode) of a history's rows; 0 for none."""
    return max((int(row.get("step") or 0) for row in history), default=0)


def parse_history(lines):
    """The rows of a history's text lines (`read_history`): an epoch logged twice keeps its
    last row."""
    rows = {}
    for line in lines:
        if line.strip():
            row = json.loads(line)
            rows[int(row["epoch"])] = row
    return [rows[epoch] for epoch in sorted(rows)]


def load_records(root="."):
    """Every ``results/<task>/<run>/metrics.json`` under ``root``, sorted by path."""
    records = []
    base = os.path.join(root, "results")
    if not os.path.isdir(base):
        return records
    for task in sorted(os.listdir(base)):
        task_dir = os.path.join(base, task)
        if not os.path.isdir(task_dir):
            continue
        for run in sorted(os.listdir(task_dir)):
            path = os.path.join(task_dir, run, "metrics.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                data = json.load(f)
            for key in ("task", "config", "results", "history"):
                if key not in data:
                    raise ValueError(f"{path}: a run record has no {key!r} (see RunRecorder).")
            records.append(
                Record(
                    os.path.relpath(path, root),
                    data["task"],
                    data["config"],
                    data["results"],
                    int(data.get("train_steps", 0)),
                    float(data.get("wall_seconds", 0.0)),
                    data["history"],
                    int(data.get("protocol", 1)),
                    data.get("diverged"),
                    data.get("stopped_early"),
                )
            )
    _check_unique(records)
    return records


# Config fields that say where a run lay on its machine, not what it trained.
MACHINE_FIELDS = ("model_dir", "data_dir")


def _check_unique(records):
    """Raises ValueError when two records hold the same run (task, config with its seed,
    steps trained and protocol): a table would count that seed twice."""
    seen = {}
    for record in records:
        config = {k: v for k, v in record.config.items() if k not in MACHINE_FIELDS}
        key = (
            record.task,
            json.dumps(config, sort_keys=True),
            record.train_steps,
            record.protocol,
        )
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {record.path} are records of the same run (task, config "
                "with its seed, and steps); a table would count it twice: keep one."
            )
        seen[key] = record.path


# What a collected record says instead of the absolute ``model_dir`` of the machine that
# trained it: the run directory's name under the runs directory.
RUNS_DIR_PLACEHOLDER = "<runs_dir>"


def portable_text(text, run_dir):
    """``text`` with every occurrence of ``run_dir``'s absolute path (as written in a
    record's config, argv and invocations) replaced by ``<runs_dir>/NAME``, NAME its last
    component; a relative ``run_dir`` is not a path of the machine, and stays."""
    if not os.path.isabs(run_dir):
        return text
    path = os.path.normpath(run_dir)
    portable = f"{RUNS_DIR_PLACEHOLDER}/{os.path.basename(path)}"
    # A path ends at a quote, a separator or the end: ``/runs/a`` must not match ``/runs/ab``.
    return re.sub(re.escape(path) + r"(?=[\"/\s]|$)", portable, text)


def collect(run_dir, destination):
    """Copies a finished run's record (``run_dir/metrics.json``) to ``destination``.

    Only the record travels: checkpoints, logs and curves stay in ``run_dir``. An absolute
    ``run_dir`` in the record is written as ``<runs_dir>/NAME`` (`portable_text`): a
    committed record names no path of the machine that trained it.
    """
    source = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(source):
        raise FileNotFoundError(f"`run_dir` ({run_dir!r}) has no metrics.json: is it finished?")
    os.makedirs(destination, exist_ok=True)
    with open(source) as f:
        text = portable_text(f.read(), os.path.abspath(run_dir))
    json.loads(text)  # still a record
    with open(os.path.join(destination, "metrics.json"), "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------- tables

MODEL_LABELS = {"mnm_p": "MNM-p", "mnm_g": "MNM-g", "salu": "LSTM+SALU", "lstm": "LSTM"}
MODEL_ORDER = tuple(MODEL_LABELS)


def _model_rank(record):
    """Where ``record``'s model comes in the tables (`MODEL_ORDER`; others last)."""
    model = record.config.get("model")
    return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)


def _task_label(config):
    if config.get("task") == "dictionary":
        return f"dictionary inference ({config['support_size']}, {config['sequence_length']})"
    return str(config.get("task", "")).replace("_", " ")


def _writes_label(config):
    if config.get("model") not in ("mnm_p", "mnm_g"):
        return "-"
    return "normalised" if config.get("normalize_writes") else "paper"


def _mean_std(values, digits=3):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _median_iqr(values, digits=1):
    """``median [first quartile, third quartile]`` (NumPy's linear interpolation)."""
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return f"{median:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


# Config fields that differ between the runs of one setting, or name where a run lies.
_RUN_FIELDS = ("seed", "model_dir", "data_dir", "init_from", "train_steps", "num_episodes")


def _setting(record):
    config = {k: v for k, v in record.config.items() if k not in _RUN_FIELDS}
    return record.task, json.dumps(config, sort_keys=True), record.protocol


def _placed(records):
    """``records`` with each diverged one set at its setting's budget: the largest
    ``train_steps`` of the setting's other seeds (else the budget its config trained
    to), so that it counts among them, as a seed that did not solve the task, instead of
    in a row of its own at the step where it diverged."""
    reached = {}
    for r in records:
        if not r.diverged:
            reached[_setting(r)] = max(reached.get(_setting(r), 0), r.train_steps)
    placed = []
    for r in records:
        if r.diverged:
            budget = r.config.get("train_steps") or r.config.get("num_episodes") or 0
            r = dataclasses.replace(r, train_steps=reached.get(_setting(r), int(budget)))
        placed.append(r)
    return placed


def _with_diverged(group, text_of_values, value_of):
    """``text_of_values`` of the group's results (``value_of(record)``), then how many of
    its runs diverged and at which steps; "-" for no result."""
    values = [value_of(r) for r in group if not r.diverged]
    text = text_of_values(values) if values else "-"
    steps = sorted(int(r.diverged["step"]) for r in group if r.diverged)
    if steps:
        where = ", ".join(f"{step:,}" for step in steps)
        note = f"{len(steps)} diverged (step {where})"
        text = note if text == "-" else f"{text}; {note}"
    return text


def _group(records, key):
    groups = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _markdown(header, rows, records=()):
    """A markdown table; with ``records``, a note under it when some are of an old protocol."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    old = sorted({r.protocol for r in records if r.old})
    for protocol in old:
        lines += [
            "",
            f"{OLD_MARK} Recorded under training protocol {protocol} (before protocol "
            f"{PROTOCOL}): {PROTOCOLS.get(protocol, 'unknown')}. These runs measure another "
            "objective and are to be replaced by runs of the current protocol.",
        ]
    return "\n".join(lines) + "\n"


def _marked(label, record):
    """``label``, with `OLD_MARK` when ``record`` is of an old protocol."""
    return f"{label} {OLD_MARK}" if record.old else label


def _algorithmic_key(record):
    config = record.config
    return (
        _task_label(config),
        _model_rank(record),
        _writes_label(config),
        record.train_steps,
        -record.protocol,
    )


def algorithmic_table(records):
    """Held-out errors of the algorithmic tasks: one row per task, model, writes, budget."""
    records = _placed([r for r in records if r.task == "algorithmic"])
    if not records:
        return NO_RECORD + "\n"
    rows = []
    for key, group in sorted(_group(records, _algorithmic_key).items()):
        task, _, writes, steps, _ = key
        sequence = [None if r.diverged else r.results["eval_sequence_error"] for r in group]
        # (a diverged run's time stops at its step: not a budget's training time)
        seconds = [r.wall_seconds for r in group if not r.diverged]
        rows.append(
            [
                task,
                _marked(
                    MODEL_LABELS.get(group[0].config["model"], group[0].config["model"]),
                    group[0],
                ),
                writes,
                f"{steps:,}",
                len(group),
                _with_diverged(group, _mean_std, lambda r: r.results["eval_sequence_error"]),
                _with_diverged(group, _mean_std, lambda r: r.results["eval_symbol_error"]),
                f"{sum(value == 0 for value in sequence)}/{len(group)}",
                f"{np.mean(seconds):.0f}" if seconds else "-",
            ]
        )
    return _markdown(
        [
            "task",
            "model",
            "writes",
            "steps",
            "seeds",
            "held-out sequence error",
            "held-out symbol error",
            "solved",
            "training s (mean)",
        ],
        rows,
        records,
    )


# The writes comparison's first budget: the first stage of the dictionary runs
# (`examples.reproduce.DICTIONARY_STAGES`); shorter runs (tests, trials) are left out.
WRITES_MIN_STEPS = 2000


def _normalize_writes_records(records):
    """The records of the writes comparison: MNM-p and MNM-g on dictionary (4, 1), at
    `WRITES_MIN_STEPS` steps or more (one row per budget)."""
    return [
        r
        for r in _placed(records)
        if r.task == "algorithmic"
        and r.config.get("task") == "dictionary"
        and (r.config.get("support_size"), r.config.get("sequence_length")) == (4, 1)
        and r.config.get("model") in ("mnm_p", "mnm_g")
        and r.train_steps >= WRITES_MIN_STEPS
    ]


def normalize_writes_table(records):
    """Dictionary inference (4, 1): the paper's writes against normalised, per budget."""
    return algorithmic_table(_normalize_writes_records(records))


# The paper's results the summary sets beside ours (paper section 4).
PAPER = {
    "associative recall": "not in the paper (the demo)",
    "dictionary inference (4, 1)": "every model solves it (figure 2)",
    "dictionary inference (8, 4)": "memory-augmented models solve it (figure 2)",
    "dictionary inference (12, 8)": "only MNM-p and MNM-g reach zero error (figure 2)",
    "dictionary inference (16, 12)": "only MNM-p and MNM-g reach zero error (figure 2)",
    "double copy": "MNM solves it quickly (figure 4)",
    "priority sort": "LSTM+SALU best (figure 4)",
    "bAbI": "MNM-p mean error 0.55 ± 0.74 % over 20 tasks (12 runs, table 4)",
    "maze": "MNM-p about 175 reward per episode at 250,000 episodes (figure 6)",
}


def _paper_result(task):
    """The paper's result for a summary row's ``task`` label: `PAPER`, or for a single
    bAbI task ("bAbI task N") its errors in the paper's table 3."""
    single = re.fullmatch(r"bAbI task (\d+)", task)
    if single:
        n = int(single.group(1))
        mnm_p, mnm_g = PAPER_TABLE_3["MNM-p"][n - 1], PAPER_TABLE_3["MNM-g"][n - 1]
        return f"{mnm_p:g} % error for MNM-p, {mnm_g:g} % for MNM-g (best joint run, table 3)"
    return PAPER.get(task, "-")


def _natural(text):
    """A sort key that orders the numbers in ``text`` by value: "(4, 1)" before "(12, 8)",
    "task 2" before "task 16"."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


def _model_label(config):
    model = config.get("model", "-")
    label = MODEL_LABELS.get(model, model)
    if model in ("mnm_p", "mnm_g") and "memory_layers" in config:
        label += f" {config['memory_layers']} x {config.get('memory_units', '?')}"
    writes = _writes_label(config)
    return label if writes == "-" else f"{label}, {writes} writes"


def _headline(r):
    """(task, metric, value, solved, budget, link) of a record's headline result (the
    README summary's), or None for a record that the summary leaves out; value None for
    a run that diverged."""
    config = r.config
    results = r.results if not r.diverged else collections.defaultdict(lambda: None)
    if r.task == "algorithmic":
        task, metric = _task_label(config), "held-out sequence error"
        value, budget = results["eval_sequence_error"], f"{r.train_steps:,} steps"
        link, solved = "docs/tasks/algorithmic.md", value == 0
    elif r.task == "associative_recall":
        task, metric = "associative recall", "held-out error"
        value, budget = results["eval_error"], f"{r.train_steps:,} steps"
        link, solved = "docs/tasks/algorithmic.md#associative-recall", value == 0
    elif r.task == "babi":
        tasks = config.get("tasks") or ()
        task = "bAbI" if len(tasks) != 1 else f"bAbI task {tasks[0]}"
        metric, value = "mean answer error %", results["mean_error"]
        budget, link = f"{r.train_steps:,} steps", "docs/tasks/babi.md"
        solved = value is not None and not results.get("failed_tasks")
    elif r.task == "maze" and not _is_maze_regime(r):  # the regime study: its page only
        task, metric = "maze", "greedy reward on held-out mazes"
        value = r.results["eval_greedy_reward"]
        budget = f"{r.train_steps:,} episodes, {config.get('batch_size', 16)} per update"
        link, solved = "docs/tasks/maze.md", None
    else:
        return None
    return task, metric, value, solved, budget, link


def _summary_rows(records):
    """(task, model, metric, values, solved, budget, link) per task and configuration."""
    groups = {}
    for r in _placed(records):
        headline = _headline(r)
        if headline is None:
            continue
        task, metric, value, solved, budget, link = headline
        key = (
            task,
            _model_rank(r),
            _marked(_model_label(r.config), r),
            metric,
            budget,
            link,
            r.protocol,
        )
        groups.setdefault(key, []).append((r, value, solved))
    return sorted(
        groups.items(),
        key=lambda item: (_natural(item[0][0]), item[0][1], -item[0][6], item[0][2]),
    )


def summary_table(records):
    """The README's summary: per task and configuration, the paper's result beside ours."""
    rows = []
    for (task, _, model, metric, budget, link, _), values in _summary_rows(records):
        group = [r for r, _, _ in values]
        number_of = {id(r): value for r, value, _ in values}
        solved = [flag for _, _, flag in values]
        rows.append(
            [
                task,
                _paper_result(task),
                model,
                metric,
                _with_diverged(
                    group,
                    functools.partial(_mean_std, digits=3 if metric.endswith("error") else 1),
                    lambda r, number_of=number_of: number_of[id(r)],
                ),
                len(values),
                "-" if None in solved else f"{sum(solved)}/{len(solved)}",
                budget,
                f"[details]({link})",
            ]
        )
    if not rows:
        return NO_RECORD + "\n"
    header = ["task", "paper", "ours: model", "metric", "ours", "seeds", "solved", "budget", "more"]
    return _markdown(header, rows, records)


def associative_recall_table(records):
    """Held-out error of associative recall per model (mean ± std over seeds)."""
    records = _placed([r for r in records if r.task == "associative_recall"])
    if not records:
        return NO_RECORD + "\n"
    groups = _group(records, lambda r: (_marked(_model_label(r.config), r), r.train_steps))
    chance = {
        key: next((f"{r.results['chance_error']:.3f}" for r in group if not r.diverged), "-")
        for key, group in groups.items()
    }
    rows = [
        [
            model,
            f"{steps:,}",
            len(group),
            _with_diverged(group, _mean_std, lambda r: r.results["eval_error"]),
            chance[model, steps],
            f"{np.mean([r.wall_seconds for r in group]):.0f}",
        ]
        for (model, steps), group in sorted(groups.items())
    ]
    header = ["model", "steps", "seeds", "held-out error", "chance", "training s (mean)"]
    return _markdown(header, rows, records)


def _tasks_text(tasks):
    """A bAbI run's tasks: "1-20" for all 20 (or none given: the script's default), else
    the list."""
    tasks = tuple(tasks or range(1, 21))
    return "1-20" if tasks == tuple(range(1, 21)) else ",".join(str(t) for t in tasks)


def babi_table(records):
    """bAbI runs: mean answer error, failed tasks (error > 5 %) and each task's error."""
    records = [r for r in records if r.task == "babi"]
    if not records:
        return NO_RECORD + "\n"

    def order(r):  # the joint runs, then the single tasks in task order; models, seeds
        tasks = list(r.config.get("tasks") or ())
        return (len(tasks) == 1, tasks, _model_rank(r), r.config.get("seed", 0), r.path)

    rows = []
    for r in sorted(records, key=order):
        if r.diverged:
            outcome = [f"diverged at step {int(r.diverged['step']):,}", "-", "-"]
        else:
            errors = r.results["task_errors"]
            outcome = [
                f"{r.results['mean_error']:.2f}",
                len(r.results["failed_tasks"]),
                ", ".join(f"{t}: {e:.1f}" for t, e in enumerate(errors, 1) if e is not None),
            ]
        rows.append(
            [
                _marked(_model_label(r.config), r),
                _tasks_text(r.config.get("tasks")),
                f"{r.train_steps:,}" + (" (stopped early)" if r.stopped_early else ""),
                r.config.get("seed", "-"),
                *outcome,
            ]
        )
    header = ["model", "tasks", "steps", "seed", "mean error %", "failed", "error % per task"]
    return _markdown(header, rows, records)


def babi_tasks_table(records):
    """bAbI single-task runs per task and configuration: the answer error (mean ± std over
    seeds, then each seed's), the seeds that passed (error at most `BABI_FAILED_ABOVE`)
    and the paper's best joint run on that task (its table 3) for the MNM models."""
    records = _placed(
        [r for r in records if r.task == "babi" and len(r.config.get("tasks") or ()) == 1]
    )
    if not records:
        return NO_RECORD + "\n"

    def key(r):
        return (
            r.config["tasks"][0],
            _model_rank(r),
            _marked(_model_label(r.config), r),
            r.train_steps,
        )

    rows = []
    for (task, _, model, steps), group in sorted(_group(records, key).items()):
        group = sorted(group, key=lambda r: r.config.get("seed", 0))
        errors = [None if r.diverged else r.results["mean_error"] for r in group]
        label = MODEL_LABELS.get(group[0].config.get("model"))
        paper = PAPER_TABLE_3.get(label)
        stopped = sum(bool(r.stopped_early) for r in group)
        rows.append(
            [
                task,
                model,
                f"{steps:,}" + (f" ({stopped} stopped early)" if stopped else ""),
                len(group),
                _with_diverged(
                    group,
                    functools.partial(_mean_std, digits=1),
                    lambda r: r.results["mean_error"],
                ),
                " / ".join("-" if e is None else f"{e:.1f}" for e in errors),
                f"{sum(e is not None and e <= BABI_FAILED_ABOVE for e in errors)}/{len(group)}",
                "-" if paper is None else f"{paper[task - 1]:g}",
            ]
        )
    header = [
        "task",
        "model",
        "steps",
        "seeds",
        "error % (mean ± std)",
        "error % per seed",
        f"passed (<= {BABI_FAILED_ABOVE:g} %)",
        "paper, best joint run (table 3)",
    ]
    return _markdown(header, rows, records)


def _maze_setting(record):
    """(model label, episodes per update, learning rate) of a maze record."""
    config = record.config
    return (
        _marked(_model_label(config), record),
        int(config.get("batch_size", 16)),
        float(config.get("learning_rate", 1e-4)),
    )


def _is_maze_regime(record):
    return record.task == "maze" and record.run.startswith(MAZE_REGIME_PREFIX)


def _maze_cell(group, key, text=None):
    """``text`` (default: mean ± standard deviation, one decimal) of the group's
    ``results[key]``, with its diverged runs (`_with_diverged`)."""
    text = text or functools.partial(_mean_std, digits=1)
    return _with_diverged(group, text, lambda r: r.results[key])


def _finite_seconds(group):
    """Mean training seconds of the group's runs that did not diverge ("-" for none)."""
    seconds = [r.wall_seconds for r in group if not r.diverged]
    return f"{np.mean(seconds):.0f}" if seconds else "-"


def _maze_rows(records, cells):
    """One row per maze setting and budget: model, episodes per update, learning rate,
    episodes and seeds, then ``cells(group)`` of the group's records."""
    groups = _group(records, lambda r: (*_maze_setting(r), r.train_steps))
    return [
        [model, batch, f"{rate:g}", f"{episodes:,}", len(group), *cells(group)]
        for (model, batch, rate, episodes), group in sorted(groups.items())
    ]


MAZE_SETTING_HEADER = ["model", "episodes per update", "learning rate", "episodes", "seeds"]


def maze_table(records):
    """Maze runs: greedy and sampling rewards on held-out mazes (mean ± standard deviation,
    then median and inter-quartile range over seeds), and the training reward."""
    records = _placed([r for r in records if r.task == "maze" and not _is_maze_regime(r)])
    if not records:
        return NO_RECORD + "\n"

    def cells(group):
        return [
            _maze_cell(group, "eval_greedy_reward"),
            _maze_cell(group, "eval_greedy_reward", _median_iqr),
            _maze_cell(group, "eval_sampling_reward"),
            _maze_cell(group, "eval_sampling_reward", _median_iqr),
            _maze_cell(group, "train_reward_last_1000"),
            _maze_cell(group, "random_policy_reward"),
            _finite_seconds(group),
        ]

    header = [
        *MAZE_SETTING_HEADER,
        "greedy reward (held-out mazes)",
        "greedy, median [IQR]",
        "sampling reward (held-out mazes)",
        "sampling, median [IQR]",
        "training reward (last 1,000 episodes)",
        "random policy reward",
        "training s (mean)",
    ]
    return _markdown(header, _maze_rows(records, cells) + MAZE_PAPER_ROWS, records)


# The paper's figure 6 beside the maze table (its curves are training rewards; the
# reference updates after every episode): MNM (10 runs) and Miconi et al.'s plastic
# networks, and the random policy (maze.md; runs record their own, measured on their
# held-out mazes by examples.maze_training.random_policy_reward).
MAZE_PAPER_ROWS = [
    [label, 1, "-", episodes, runs, "-", "-", "-", "-", "about 175", "9.3", "-"]
    for label, episodes, runs in (
        ("paper: MNM (figure 6, 10 runs)", "250,000", 10),
        ("paper: plastic networks (Miconi et al., figure 6)", "about 1,000,000", "-"),
    )
]


# The runs of `python -m examples.reproduce maze_regime` (their names start so).
MAZE_REGIME_PREFIX = "maze-regime-"


def maze_regime_table(records):
    """Episodes per update on the maze: per model, episodes per update and learning rate,
    the training reward reached (last 1,000 episodes) and the held-out sampling reward,
    with the training time and its speed; the learning curves against episodes and against
    seconds of training (`maze_regime_figure`) below the table."""
    records = _placed([r for r in records if _is_maze_regime(r)])
    if not records:
        return NO_RECORD + "\n"

    def cells(group):
        finite = [r for r in group if not r.diverged and r.wall_seconds]
        speed = np.mean([r.train_steps / r.wall_seconds for r in finite]) if finite else None
        return [
            _maze_cell(group, "train_reward_last_1000"),
            _maze_cell(group, "eval_sampling_reward"),
            _maze_cell(group, "eval_greedy_reward"),
            _maze_cell(group, "random_policy_reward"),
            _finite_seconds(group),
            "-" if speed is None else f"{speed:.1f}",
        ]

    header = [
        *MAZE_SETTING_HEADER,
        "training reward (last 1,000 episodes)",
        "sampling reward (held-out mazes)",
        "greedy reward (held-out mazes)",
        "random policy reward",
        "training s (mean)",
        "episodes/s",
    ]
    rows = _maze_rows(records, cells)
    table = _markdown(header, rows, records)
    figures = "".join(
        f"\n![{title}](../figures/{name}.png)\n" for name, title in MAZE_REGIME_FIGURES.items()
    )
    return table + figures


TABLES = {
    "summary": summary_table,
    "algorithmic": algorithmic_table,
    "normalize_writes": normalize_writes_table,
    "associative_recall": associative_recall_table,
    "babi": babi_table,
    "babi_tasks": babi_tasks_table,
    "maze": maze_table,
    "maze_regime": maze_regime_table,
}


# ---------------------------------------------------------------------------- figures


def normalize_writes_figure(records):
    """Held-out sequence error of dictionary inference (4, 1) against steps, per setting."""
    # A diverged run has no curve to the budget (the tables count it).
    selected = [r for r in _normalize_writes_records(records) if not r.diverged]
    several_budgets = len({r.train_steps for r in selected}) > 1
    curves = {}
    for key, group in sorted(_group(selected, _algorithmic_key).items()):
        label = f"{MODEL_LABELS[group[0].config['model']]}, {key[2]} writes"
        if several_budgets:
            label += f", {key[3]:,} steps"
        label = _marked(label, group[0])
        steps = [row["step"] for row in group[0].history]
        values = np.mean([[row["val_sequence_error"] for row in r.history] for r in group], axis=0)
        curves[label] = {"x": [int(s) for s in steps], "y": [round(float(v), 6) for v in values]}
    return {
        "title": "dictionary inference (4, 1): mean over seeds",
        "xlabel": "training step",
        "ylabel": "held-out sequence error",
        "curves": curves,
        "sources": sorted(r.path for r in selected),
    }


def _maze_regime_curves(records, x_of):
    """{label: {"x", "y"}}: the training reward of each interval, mean over the seeds of a
    maze_regime setting, against ``x_of(record)`` (the first seed's x values)."""
    selected = [r for r in records if _is_maze_regime(r) and not r.diverged]
    curves = {}
    for (model, batch, rate, _), group in sorted(
        _group(selected, lambda r: (*_maze_setting(r), r.train_steps)).items()
    ):
        length = min(len(r.history) for r in group)
        values = np.mean([[row["train_reward"] for row in r.history[:length]] for r in group], 0)
        curves[f"{model}, {batch} per update, lr {rate:g}"] = {
            "x": [round(float(x), 1) for x in x_of(group[0])[:length]],
            "y": [round(float(v), 4) for v in values],
        }
    return curves, sorted(r.path for r in selected)


def maze_regime_figure(records, against):
    """Training reward of the maze_regime runs against episodes or seconds of training."""
    if against == "episodes":
        x_of, xlabel = (lambda r: [row["step"] for row in r.history]), "episodes"
    else:
        x_of = lambda r: np.cumsum([row["epoch_seconds"] for row in r.history])  # noqa: E731
        xlabel = "seconds of training (first seed)"
    curves, sources = _maze_regime_curves(records, x_of)
    return {
        "title": "maze: training reward (mean over seeds)",
        "xlabel": xlabel,
        "ylabel": "training reward per episode",
        "curves": curves,
        "sources": sources,
    }


def maze_learning_curves_figure(records):
    """Greedy reward on the held-out mazes at every evaluation of each maze table run
    (one curve per seed: staged runs of one model may stand at different budgets), one
    panel per model (``panels``; a curve's ``panel``), with the mean random policy's reward
    on the same mazes as a flat line in every panel (its ``panel`` is None)."""
    selected = [
        r
        for r in records
        if r.task == "maze"
        and not _is_maze_regime(r)
        and any("eval_greedy_reward" in row for row in r.history)
    ]
    curves, panels = {}, []
    for record in sorted(selected, key=lambda r: (_maze_setting(r), r.config.get("seed", 0))):
        model = _maze_setting(record)[0]
        rows = [row for row in record.history if "eval_greedy_reward" in row]
        panels += [] if model in panels else [model]
        curves[f"{model}, seed {record.config.get('seed', 0)}"] = {
            "x": [int(row["step"]) for row in rows],
            "y": [round(float(row["eval_greedy_reward"]), 4) for row in rows],
            "panel": model,
        }
    if curves:
        last = max(x for curve in curves.values() for x in curve["x"])
        measured = [r.results["random_policy_reward"] for r in selected if not r.diverged]
        random = np.mean(measured) if measured else np.nan
        curves["random policy"] = {"x": [0, last], "y": [round(float(random), 4)] * 2}
        curves["random policy"]["panel"] = None
    return {
        "title": "maze: greedy reward on the held-out mazes, every evaluation",
        "xlabel": "training episodes",
        "ylabel": "reward per episode",
        "curves": curves,
        "panels": panels,
        "sources": sorted(r.path for r in selected),
    }


def _learning_curves(records, panel_of, metric):
    """(curves, panels) of ``metric`` at every evaluation of each record (``records`` in
    the order wanted), one panel per ``panel_of(record)``, one curve per run: a colour per
    model and a line style per seed (``style``), a run of an old protocol faint."""
    curves, panels = {}, []
    for record in records:
        panel = panel_of(record)
        panels += [] if panel in panels else [panel]
        model = _marked(MODEL_LABELS.get(record.config.get("model"), "?"), record)
        rows = [row for row in record.history if metric in row]
        label = f"{panel}, {model}, seed {record.config.get('seed', 0)}"
        if label in curves:  # another size or setting of the same model: named by its run
            label += f" ({record.run})"
        curves[label] = {
            "x": [int(row["step"]) for row in rows],
            "y": [round(float(row[metric]), 4) for row in rows],
            "panel": panel,
            "style": {
                "color": f"C{_model_rank(record)}",
                "linestyle": ("-", "--", ":")[record.config.get("seed", 0) % 3],
                "alpha": 0.4 if record.old else 1.0,
            },
        }
    return curves, panels


def babi_learning_curves_figure(records):
    """The validation answer-word error of every bAbI run at each evaluation, one panel per
    task or set of tasks (the single tasks in order, then the joint runs), one curve per
    model and seed (a run's latest stage: where its record stands; `_learning_curves`)."""
    selected = [
        r for r in records if r.task == "babi" and any("val_word_error" in h for h in r.history)
    ]

    def order(r):
        tasks = tuple(r.config.get("tasks") or range(1, 21))
        return len(tasks), tasks, _model_rank(r), r.old, r.config.get("seed", 0)

    def panel_of(r):
        tasks = _tasks_text(r.config.get("tasks"))
        return f"task {tasks}" if tasks.isdigit() else f"tasks {tasks}"

    curves, panels = _learning_curves(sorted(selected, key=order), panel_of, "val_word_error")
    return {
        "title": "bAbI: validation answer-word error, every evaluation",
        "xlabel": "training step",
        "ylabel": "validation answer-word error",
        "curves": curves,
        "panels": panels,
        "sources": sorted(r.path for r in selected),
    }


def dictionary_learning_curves_figure(records):
    """The validation sequence error of every dictionary inference run with normalised
    writes (or none: the baselines) at each evaluation, one panel per (k, l), one curve per
    model and seed (`_learning_curves`), against the steps on a log scale (the baselines
    train 50 times longer than MNM's first stage)."""
    selected = [
        r
        for r in records
        if r.task == "algorithmic"
        and r.config.get("task") == "dictionary"
        and _writes_label(r.config) != "paper"
        and any("val_sequence_error" in h for h in r.history)
    ]

    def order(r):
        shape = r.config["support_size"], r.config["sequence_length"]
        return shape, _model_rank(r), r.old, r.config.get("seed", 0)

    curves, panels = _learning_curves(
        sorted(selected, key=order), lambda r: _task_label(r.config), "val_sequence_error"
    )
    return {
        "title": "dictionary inference: validation sequence error, every evaluation",
        "xlabel": "training step",
        "ylabel": "validation sequence error",
        "xscale": "log",
        "curves": curves,
        "panels": panels,
        "sources": sorted(r.path for r in selected),
    }


MAZE_REGIME_FIGURES = {
    "maze_regime_episodes": "training reward against episodes",
    "maze_regime_seconds": "training reward against seconds of training",
}

FIGURES = {
    "dictionary_4_1_normalize_writes": normalize_writes_figure,
    "maze_regime_episodes": lambda records: maze_regime_figure(records, "episodes"),
    "maze_regime_seconds": lambda records: maze_regime_figure(records, "seconds"),
    "maze_learning_curves": maze_learning_curves_figure,
    "babi_learning_curves": babi_learning_curves_figure,
    "dictionary_learning_curves": dictionary_learning_curves_figure,
}


def _draw(path, figure):
    try:
        from examples.plotting import plot_curves, plot_panels
    except ImportError:  # pragma: no cover (a script run as a file)
        from plotting import plot_curves, plot_panels

    if figure.get("panels"):
        plot_panels(
            path,
            {
                panel: {
                    label.removeprefix(f"{panel}, "): (
                        curve["x"],
                        curve["y"],
                        curve.get("style", {}),
                    )
                    for label, curve in figure["curves"].items()
                    if curve.get("panel") == panel
                }
                for panel in figure["panels"]
            },
            shared={
                label: (curve["x"], curve["y"])
                for label, curve in figure["curves"].items()
                if curve.get("panel") is None
            },
            title=figure["title"],
            xlabel=figure["xlabel"],
            ylabel=figure["ylabel"],
            xscale=figure.get("xscale", "linear"),
        )
        return
    plot_curves(
        path,
        {label: curve["x"] for label, curve in figure["curves"].items()},
        {label: curve["y"] for label, curve in figure["curves"].items()},
        title=figure["title"],
        xlabel=figure["xlabel"],
        ylabel=figure["ylabel"],
    )


# ----------------------------------------------------------------------------- render


def _doc_files(root):
    files = []
    for entry in DOCS:
        path = os.path.join(root, entry)
        if os.path.isfile(path):
            files.append(path)
        for directory, _, names in sorted(os.walk(path)):
            files += [os.path.join(directory, n) for n in sorted(names) if n.endswith(".md")]
    return files


def rendered_docs(root="."):
    """{path: text} of every doc file with a results table, its tables rendered anew."""
    records = load_records(root)
    out = {}
    for path in _doc_files(root):
        with open(path, encoding="utf-8") as f:
            text = f.read()

        def fill(match, path=path):
            name = match.group("name")
            if name == "reproduce":  # the reproduce command's tables, from the records' speed
                from examples import reproduce

                return match.group(1) + reproduce.tables_markdown(root, records) + match.group(4)
            if name not in TABLES:
                known = [*TABLES, "reproduce"]
                raise ValueError(f"{path}: unknown results table {name!r}; known: {known}")
            return match.group(1) + TABLES[name](records) + match.group(4)

        new = TABLE.sub(fill, text)
        if new != text or TABLE.search(text):
            out[path] = new
    return out


def figure_data(root="."):
    """{name: data} of every figure whose records exist (``docs/figures/NAME.json``)."""
    records = load_records(root)
    data = {name: function(records) for name, function in FIGURES.items()}
    return {name: value for name, value in data.items() if value["curves"]}


def render(root="."):
    """Rewrites the docs' tables and ``docs/figures`` from the records; returns the paths."""
    changed = []
    for path, text in rendered_docs(root).items():
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        changed.append(path)
    figures = os.path.join(root, "docs", "figures")
    for name, data in figure_data(root).items():
        os.makedirs(figures, exist_ok=True)
        with open(os.path.join(figures, f"{name}.json"), "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        _draw(os.path.join(figures, f"{name}.png"), data)
        changed.append(os.path.join(figures, f"{name}.png"))
    return changed


def stale(root="."):
    """What ``render`` would change: doc files and figures that differ from the records."""
    out = []
    for path, text in rendered_docs(root).items():
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                out.append(path)
    for name, data in figure_data(root).items():
        path = os.path.join(root, "docs", "figures", f"{name}.json")
        png = path[: -len(".json")] + ".png"
        if not os.path.exists(path) or not os.path.exists(png):
            out.append(png)
            continue
        with open(path) as f:
            if json.load(f) != json.loads(json.dumps(data)):
                out.append(png)
    return out


# ---------------------------------------------------------------------------- compare
# The least difference `compare` counts as outside a cell's spread, per headline metric:
# a cell whose seeds agree exactly (three solved runs: 0.000 ± 0.000) still lets a rerun
# differ by this much (about 5 of the 500 held-out dictionary episodes, 1 point of bAbI
# error, 5 of the maze's rewards, a few percent of the random policy's 9.3).
COMPARE_FLOOR = {
    "held-out sequence error": 0.01,
    "held-out error": 0.01,
    "mean answer error %": 1.0,
    "greedy reward on held-out mazes": 5.0,
}


def compare(root, other, sigmas=2.0):
    """Each record of ``other`` (a rerun's ``results/``, e.g. ``python -m
    examples.reproduce TABLE --results_root=OTHER``) beside the committed cell of its run:
    the records of ``root`` with the same task, setting (config but seed and paths) and
    steps. A rerun's headline result (`_headline`) is within the cell when it is at most
    ``max(sigmas * std, COMPARE_FLOOR[metric])`` from the cell's mean (std over the
    committed seeds, 0 for one seed); a diverged rerun is within a cell where a committed
    seed diverged too. Returns (rows, outside): the rows of a markdown table and the names of
    the reruns outside their cell or without a committed one."""
    if not sigmas >= 0:
        raise ValueError(f"`sigmas` must be non-negative; received sigmas={sigmas!r}.")
    committed = _group(
        [r for r in _placed(load_records(root)) if _headline(r)],
        lambda r: (_setting(r), r.train_steps),
    )
    rows, outside = [], []
    for r in _placed(load_records(other)):
        headline = _headline(r)
        if headline is None:
            continue
        task, metric, value, _, budget, _ = headline
        cell = committed.get((_setting(r), r.train_steps), [])
        values = [_headline(c)[2] for c in cell]
        label = f"{task}, {_model_label(r.config)}, seed {r.config.get('seed', '-')}"
        rerun = "diverged" if value is None else f"{value:.3f}"
        if not cell:
            rows.append([r.run, label, budget, metric, rerun, "-", "no committed record", "no"])
            outside.append(r.run)
            continue
        finite = [v for v in values if v is not None]
        if finite:
            mean = float(np.mean(finite))
            std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
            bound = max(sigmas * std, COMPARE_FLOOR[metric])
            seeds = f"{len(finite)} seed" + ("s" if len(finite) > 1 else "")
            text = f"{mean:.3f} ± {std:.3f} ({seeds})"
        else:
            text, bound = f"all {len(values)} diverged", None
        if finite and len(finite) < len(values):
            text += f", {len(values) - len(finite)} diverged"
        if value is None:  # within a cell where a committed seed diverged too
            within = len(finite) < len(values)
        else:
            within = bound is not None and abs(value - mean) <= bound + 1e-12
        verdict = "yes" if within else "no"
        if bound is not None and value is not None:
            verdict += f" (bound {bound:.3f})"
        seed = [v for c, v in zip(cell, values) if c.config.get("seed") == r.config.get("seed")]
        same = "-" if not seed else "diverged" if seed[0] is None else f"{seed[0]:.3f}"
        rows.append([r.run, label, budget, metric, rerun, same, text, verdict])
        if not within:
            outside.append(r.run)
    return rows, outside


def compare_markdown(rows):
    header = [
        "run",
        "task, model, seed",
        "budget",
        "metric",
        "rerun",
        "committed, same seed",
        "committed cell (mean ± std)",
        "within",
    ]
    return _markdown(header, rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m examples.results", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("render", help="rewrite the docs' tables and figures from results/")
    commands.add_parser("check", help="exit 1 if the docs differ from results/")
    copy = commands.add_parser("collect", help="copy a finished run's record into results/")
    copy.add_argument("run_dir")
    copy.add_argument("destination", help="results/<task>/<run>")
    against = commands.add_parser(
        "compare",
        help="exit 1 unless every record of OTHER (a rerun) is within its committed cell",
    )
    against.add_argument("other", help="the root of the rerun's results/ (--results_root)")
    against.add_argument(
        "--sigmas", type=float, default=2.0, help="the bound, in the cell's standard deviations"
    )
    parser.add_argument("--root", default=".", help="the repository's root")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.run_dir, args.destination)
    elif args.command == "compare":
        rows, outside = compare(args.root, args.other, args.sigmas)
        if not rows:
            print(f"{args.other}: no record to compare (results/<task>/<run>/metrics.json)")
            return 1
        print(compare_markdown(rows), end="")
        if outside:
            print(f"outside their committed cell: {', '.join(outside)}")
        return 1 if outside else 0
    elif args.command == "render":
        for path in render(args.root):
            print(f"rendered {path}")
    else:
        out = stale(args.root)
        for path in out:
            print(f"out of date: {path} (run: python -m examples.results render)")
        return 1 if out else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
