r"""One command per results table: run (or resume) its runs, collect them, render the docs.

    python -m examples.reproduce normalize_writes --dry_run   # what is done, what is left
    python -m examples.reproduce normalize_writes             # run what is left
    python -m examples.reproduce dictionary --only=8_4-mnm_p  # some runs of a table

A table is a list of `RunSpec`: a run name, an example script and the fields of its
``Config`` that differ from the script's defaults (seeds, models, sizes, budgets and
schedules: nothing changes between invocations). The run's ``model_dir`` is
``--runs_dir/NAME``; its record is copied to ``--results_root/results/TASK/NAME/`` (the
record's ``task``) and the docs' tables are rendered from the records
(`examples.results`).

A run is done when its record exists, of the current training protocol
(`examples.results.PROTOCOL`), with the run's config (every field but ``model_dir``
and, for bAbI, ``data_dir``: a path of the machine; a field the record lacks, added to
the script later, counts at its default) and its budget (``train_steps``, the
maze's ``num_episodes``); a done run is skipped. A record with another config is an error
that names the fields (it is never overwritten); a record of an older protocol measured
another objective, so its run is trained again and the new record replaces it (a
``model_dir`` that holds a run of an older protocol is an error: move it away). Every other run is trained in its own
process (``python -m examples.SCRIPT --flag=value ...``, resuming its ``model_dir``), so a
crash of one run does not stop the others, and a table command that was killed, rerun,
trains only what is unfinished. Each process has a deadline, its estimated time times
``--deadline_factor`` plus 10 minutes: a process still running then is reported by its run's
name and killed, and the table goes on (its record is collected if it was complete; a process stopped after
its training reached the budget is invoked once more, to write the record).
``--dry_run`` prints each run's status (done, partial with the steps its ``model_dir`` has
trained, to do), its budget and an estimate of its training time from the committed
records' speed (seconds per step of the same script and model). ``--hours=H`` runs only
what fits in H hours (`fits`), and each record is collected, and the docs rendered, the
moment its run ends, so that whatever finished is kept. ``--parallel=2`` runs two at once,
each process pinned to its own core (on 2 cores, two maze runs pinned so were faster
than the same runs one after the other). A run too long for one sitting has ``stages``
(`RunSpec`): each invocation trains it to its next stage, whose record is collected like a
finished run's; a record that says training ended below its budget (it diverged, or early
stopping ended it) ends the run.

Tables: normalize_writes, demo, dictionary, dictionary_hard, double_copy, priority_sort,
babi_task1, babi_tasks, babi_joint, maze, babi_paper, maze_paper, maze_regime.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import typing

# isort: off
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ""):  # run as a script (python examples/reproduce.py)
    sys.path.insert(0, ROOT)
# The maze's script needs tf.keras to be tf-keras: set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# isort: on

from absl import app, flags  # noqa: E402

from examples import results  # noqa: E402
from examples.config_flags import define_flags, option  # noqa: E402

SEEDS = (0, 1, 2)
MODELS = ("mnm_p", "mnm_g", "salu", "lstm")
BASELINES = ("salu", "lstm")  # the paper's models without a neural memory
# The name suffix of the MNM runs with the scripts' default (normalised) writes.
MNM_WRITES = {"mnm_p": "-normalized", "mnm_g": "-normalized"}
BABI_DATA_DIR = "../shared/data/babi/tasks_1-20_v1-2"


@dataclasses.dataclass(frozen=True)
class Config:
    """The table command; every field is a flag of the same name (the table: positional)."""

    table: str | None = option(None, "The table (or pass it as the positional argument).")
    runs_dir: str = option("runs/reproduce", "Parent of the runs' model_dir (NAME below it).")
    results_root: str = option(".", "The root of results/ and docs/ (the repository).")
    dry_run: bool = option(False, "Print the runs' status and estimated time; run nothing.")
    only: str | None = option(None, "Only the runs whose name contains this string.")
    babi_data_dir: str = option(
        BABI_DATA_DIR, "bAbI: the unpacked tasks_1-20_v1-2 (relative: to the repository)."
    )
    deadline_factor: float = option(
        3.0,
        "A run's process gets its estimated time (as --dry_run's) times this, plus 10 "
        "minutes; one still running then is reported and killed, and the table goes on. "
        "0: no deadline (as for a run of unknown speed).",
    )

    hours: float = option(
        0.0,
        "Run only what fits in this many hours (0: no limit): a run starts only if its "
        "estimate (as --dry_run's) ends within them, a run of unknown speed is stopped at "
        "their end (its checkpoints keep what it trained), and each record is collected and "
        "the docs rendered the moment its run ends.",
    )
    parallel: int = option(
        1,
        "Runs at once (at most the CPU cores); with more than one, each process is pinned "
        "to its own core.",
    )
    breadth_first: bool = option(
        False,
        "Staged runs: a run's next stage waits behind the other runs, so that every run "
        "reaches its next stage before any goes further (default: each run's stages one "
        "after another, before the next run).",
    )

    def __post_init__(self):
        if not self.hours >= 0:
            raise ValueError(
                f"`hours` must be non-negative (0: no limit); received hours={self.hours!r}."
            )
        cores = len(os.sched_getaffinity(0))
        if isinstance(self.parallel, bool) or not (
            isinstance(self.parallel, int) and 1 <= self.parallel <= cores
        ):
            raise ValueError(
                f"`parallel` must be an integer from 1 to the {cores} CPU cores; received "
                f"parallel={self.parallel!r}."
            )
        if not self.deadline_factor >= 0:
            raise ValueError(
                "`deadline_factor` must be non-negative (0: no deadline); received "
                f"deadline_factor={self.deadline_factor!r}."
            )


class RunSpec(typing.NamedTuple):
    """One run of a table: its name, its script (``examples.X``) and its config's fields.

    ``stages``: budgets below the run's (increasing) at which it is stopped and recorded, for
    a run too long for one sitting: each invocation trains, resuming its ``model_dir``, to
    the next stage only, and its record (the run so far) is collected like a finished
    run's; the record of the last stage is the run's.
    """

    name: str
    script_module: str
    overrides: dict
    stages: tuple = ()


# What a Keras script's ``model_dir`` needs to resume (`examples.training.resumable_callbacks`):
# its backup (weights, optimizer, epoch), the history, the invocations and the best epoch.
KERAS_RESUME_FILES = ("backup", "history.jsonl", "invocations.json", "best.weights.h5", "best.json")


@dataclasses.dataclass(frozen=True)
class Script:
    """What a script's records look like: their ``task``, the budget field, machine fields;
    and ``resume_files``, the entries of a ``model_dir`` that a later invocation resumes
    from (those `pack_resume` keeps)."""

    task: str
    budget: str = "train_steps"
    machine_fields: tuple = ("model_dir",)
    resume_files: tuple = KERAS_RESUME_FILES


SCRIPTS = {
    "examples.algorithmic": Script("algorithmic"),
    "examples.associative_recall": Script("associative_recall"),
    "examples.babi": Script("babi", machine_fields=("model_dir", "data_dir")),
    "examples.maze_a2c": Script(
        "maze",
        budget="num_episodes",
        # examples.maze_training: the checkpoints, every episode's reward, the history.
        resume_files=("checkpoints", "rewards.csv", "history.jsonl", "invocations.json"),
    ),
}


# ------------------------------------------------------------------------------ tables


def _algorithmic(name, **overrides):
    return RunSpec(name, "examples.algorithmic", overrides)


# Table a's budget (and table b's, on the same (4, 1) runs): the paper says every model
# solves dictionary (4, 1), and at 2,000 steps only MNM with normalised writes did. Stages
# (`RunSpec.stages`) keep each invocation under 90 minutes on one core: MNM-p on (8, 4),
# the slowest, takes about 0.38 s a step, so 8,000 steps (2,000 -> 10,000) about 50 min and
# 10,000 (10,000 -> 20,000) about 63; the first stage is the earlier 2,000-step budget.
DICTIONARY_STEPS = 20_000
DICTIONARY_STAGES = (2_000, 10_000)
# The baselines (LSTM and LSTM+SALU) on (4, 1) train on to 100,000 steps (stages at
# 20,000 and 50,000, each under 90 min on one core: about 26 ms a step for the LSTM, 45 for
# SALU): at 20,000 steps their held-out error is still near a guess among the support
# set's answers (about 0.7), and the paper's figure 2 has every model solve (4, 1); the
# table shows how far they get, beside MNM's 2,000 steps.
DICTIONARY_BASELINES_4_1 = (100_000, (*DICTIONARY_STAGES, 20_000, 50_000))
# The LSTM on (4, 1) on to 500,000 steps (stages every 50,000 past 100,000, about 19 min
# each): it leaves the plateau after 26,000-36,000 steps and its validation error is still
# falling at 200,000 without reaching 0 in any seed (its mean over each 10,000 steps: 0.056-
# 0.079 over the last of 100,000, 0.032-0.042 of 150,000, 0.021-0.023 of 200,000, 34-46 %
# below 150,000's); at that rate it needs about six more stages to fall below one error in
# 500 held-out episodes. Seed 0's 10,000-step means from 200,000 to 250,000 no longer fell
# (0.021-0.026).
DICTIONARY_LSTM_4_1_STEPS = 500_000
DICTIONARY_LSTM_4_1 = (
    DICTIONARY_LSTM_4_1_STEPS,
    (*DICTIONARY_BASELINES_4_1[1], *range(100_000, DICTIONARY_LSTM_4_1_STEPS, 50_000)),
)


def _dictionary(name, *, support_size, sequence_length, budget=None, **overrides):
    steps, stages = budget or (DICTIONARY_STEPS, DICTIONARY_STAGES)
    return RunSpec(
        name,
        "examples.algorithmic",
        dict(
            task="dictionary",
            support_size=support_size,
            sequence_length=sequence_length,
            train_steps=steps,
            **overrides,
        ),
        stages=stages,
    )


def normalize_writes_table(options):
    """Dictionary (4, 1) at `DICTIONARY_STEPS` (stages `DICTIONARY_STAGES`), MNM-p and
    MNM-g: the paper's writes against normalised."""
    return [
        _dictionary(
            f"dictionary_4_1-{model}-{writes}-seed{seed}",
            support_size=4,
            sequence_length=1,
            model=model,
            normalize_writes=normalize,
            seed=seed,
        )
        for model in ("mnm_p", "mnm_g")
        for writes, normalize in (("paper", False), ("normalized", True))
        for seed in SEEDS
    ]


def demo_table(options):
    """Associative recall (the demo) with the script's defaults, MNM-p and LSTM."""
    return [
        RunSpec(
            f"associative_recall-{model}-seed{seed}",
            "examples.associative_recall",
            {"model": model, "seed": seed},
        )
        for model in ("mnm_p", "lstm")
        for seed in SEEDS
    ]


def _dictionary_budget(support_size, sequence_length, model):
    """(steps, stages) of a dictionary table run, or None for the default budget."""
    if (support_size, sequence_length) != (4, 1) or model not in BASELINES:
        return None
    return DICTIONARY_LSTM_4_1 if model == "lstm" else DICTIONARY_BASELINES_4_1


def dictionary_table(options):
    """Dictionary inference (4, 1) and (8, 4) at `DICTIONARY_STEPS` (stages
    `DICTIONARY_STAGES`), every model; the baselines on (4, 1) at
    `DICTIONARY_BASELINES_4_1`, the LSTM there at `DICTIONARY_LSTM_4_1`.

    The MNM runs carry their writes in their names, ``normalized`` (the default), so that
    the (4, 1) ones are the same runs as those of `normalize_writes_table`: one record per
    configuration and seed, trained once.
    """
    return [
        _dictionary(
            f"dictionary_{k}_{length}-{model}{MNM_WRITES.get(model, '')}-seed{seed}",
            support_size=k,
            sequence_length=length,
            budget=_dictionary_budget(k, length, model),
            model=model,
            seed=seed,
        )
        for k, length in ((4, 1), (8, 4))
        for model in MODELS
        for seed in SEEDS
    ]


# The hard dictionary instances, (12, 8) and (16, 12), where the paper has only the MNM
# models converge with zero error: MNM-p, MNM-g and LSTM+SALU, from scratch (no
# curriculum: the paper does not say it used one), to `DICTIONARY_STEPS`. Their episodes
# are 233 and 441 steps long (89 for (8, 4)), so a training step takes about 0.9 and 1.7 s
# for MNM on one core (0.30-0.38 s on (8, 4), scaled by the length), and the stages keep
# each invocation near an hour: 4,000 steps for (12, 8), 2,000 for (16, 12).
DICTIONARY_HARD_STAGES = {
    (12, 8): tuple(range(4_000, DICTIONARY_STEPS, 4_000)),
    (16, 12): tuple(range(2_000, DICTIONARY_STEPS, 2_000)),
}


def dictionary_hard_table(options):
    """Dictionary inference (12, 8) and (16, 12) at `DICTIONARY_STEPS` (stages
    `DICTIONARY_HARD_STAGES`): MNM-p, MNM-g (normalised writes) and LSTM+SALU."""
    return [
        _dictionary(
            f"dictionary_{k}_{length}-{model}{MNM_WRITES.get(model, '')}-seed{seed}",
            support_size=k,
            sequence_length=length,
            budget=(DICTIONARY_STEPS, DICTIONARY_HARD_STAGES[k, length]),
            model=model,
            seed=seed,
        )
        for k, length in DICTIONARY_HARD_STAGES
        for model in MODELS
        if model != "lstm"
        for seed in SEEDS
    ]


# The stages of the double copy and priority sort runs (`RunSpec.stages`), each under 90
# minutes on one core by the estimate from the dictionary records of the same networks
# scaled to their episode lengths (`seconds_per_step`): MNM on double copy (T = 151) about
# 0.8 s a step, on priority sort (T = 37) about 0.2.
TASK_STAGES = {"double_copy": (5_000, 10_000, 15_000), "priority_sort": (10_000,)}


def _task_table(task):
    def table(options):
        return [
            RunSpec(
                f"{task}-{model}-seed{seed}",
                "examples.algorithmic",
                dict(task=task, train_steps=20000, model=model, seed=seed),
                stages=TASK_STAGES[task],
            )
            for model in MODELS
            for seed in SEEDS
        ]

    table.__doc__ = f"{task} at 20,000 steps (stages {TASK_STAGES[task]}), every model."
    return table


# The bAbI en-10k training stories per task: (stories, mean tokens per story). A step's
# time grows with its stories' length, so a record of one task gives an estimate for another
# scaled by the ratio of these means (`seconds_per_step`); tests check them on the data.
BABI_STORIES = {
    1: (2000, 87.0), 2: (2000, 164.1), 3: (385, 483.5), 4: (10000, 24.0), 5: (2000, 207.7),
    6: (2000, 98.1), 7: (2000, 121.4), 8: (2000, 111.9), 9: (2000, 99.8), 10: (2000, 106.0),
    11: (2000, 94.4), 12: (2000, 106.9), 13: (2000, 104.5), 14: (2000, 132.1),
    15: (2500, 72.0), 16: (10000, 47.0), 17: (1250, 109.3), 18: (1978, 99.9),
    19: (10000, 53.0), 20: (933, 139.5),
}  # fmt: skip


def babi_story_length(tasks):
    """Mean tokens per training story of ``tasks`` together (`BABI_STORIES`)."""
    stories = [BABI_STORIES[t] for t in tasks]
    return sum(n * m for n, m in stories) / sum(n for n, _ in stories)


# Single bAbI tasks at a CPU size: 1, 2 and 3 (one to three supporting facts) and 16, the
# task the paper's MNM-g failed (table 3), each 2,000 steps; the stages keep each invocation
# under 90 minutes on one core: MNM-g took about 2.1 s a step on task 1 (records of
# babi_task1), so about 4 on task 2 and 12 on task 3 (`BABI_STORIES`).
BABI_SINGLE_TASKS = (1, 2, 3, 16)
BABI_STAGES = {1: (1000,), 2: (500, 1000, 1500), 3: tuple(range(250, 2000, 250)), 16: (1000,)}


# The CPU size of the bAbI tables (the paper's: 256 units, memory 3 x 100, batch 128).
BABI_CPU_SIZE = dict(units=128, memory_units=64, key_size=64, batch_size=32)


def _babi_single(options, task, model, seed):
    return RunSpec(
        f"babi-task{task}-{model}-128-seed{seed}",
        "examples.babi",
        dict(
            data_dir=options.babi_data_dir,
            tasks=(task,),
            model=model,
            **BABI_CPU_SIZE,
            train_steps=2000,
            steps_per_epoch=250,
            seed=seed,
        ),
        stages=BABI_STAGES[task],
    )


def babi_task1_table(options):
    """bAbI task 1 alone at a CPU size (128 units, memory 3 x 64), 2,000 steps."""
    return [_babi_single(options, 1, model, seed) for model in MODELS for seed in SEEDS]


def babi_tasks_table(options):
    """bAbI tasks 1, 2, 3 and 16 (`BABI_SINGLE_TASKS`), each alone at the CPU size of
    `babi_task1_table`, 2,000 steps in stages (`BABI_STAGES`), every model."""
    return [
        _babi_single(options, task, model, seed)
        for task in BABI_SINGLE_TASKS
        for model in MODELS
        for seed in SEEDS
    ]


# The 20 tasks jointly at the CPU size, MNM-p, one seed: 40,000 steps (about 23 passes
# over en-10k's 55,000 training stories), evaluated every 1,000 steps (the validation set's
# 6,100 stories), early stopping after the script's 10 evaluations without improvement
# (a stage it ends is the run's record: `RunRecorder.finish`); stages of 5,000 steps, each
# well under 90 minutes on one core: the first took 34 minutes (0.39 s a step; estimated
# at 57 from MNM-p's 0.7 s a step on task 1 in the two-core records of babi_task1). At
# 20,000 steps (the earlier budget) its validation error was still falling (0.159 at
# 15,000, 0.136 at 20,000).
BABI_JOINT_STEPS = 40_000
BABI_JOINT_STAGES = tuple(range(5_000, BABI_JOINT_STEPS, 5_000))


def babi_joint_table(options):
    """bAbI's 20 tasks jointly at the CPU size of `babi_task1_table`, MNM-p, one seed,
    `BABI_JOINT_STEPS` in stages (`BABI_JOINT_STAGES`)."""
    return [
        RunSpec(
            "babi-joint-mnm_p-128-seed0",
            "examples.babi",
            dict(
                data_dir=options.babi_data_dir,
                model="mnm_p",
                **BABI_CPU_SIZE,
                train_steps=BABI_JOINT_STEPS,
                steps_per_epoch=1000,
                seed=0,
            ),
            stages=BABI_JOINT_STAGES,
        )
    ]


# The maze table's budget and, per model, the episodes of each stage (`RunSpec.stages`),
# so that a stage takes under an hour on one core of this 2-core CPU with another run on
# the other: at 16 episodes per update the maze_regime records played 8,000 episodes in
# 167 s (LSTM) and 650 s (MNM-p 1 x 100) on both cores; one core is up to twice as slow;
# MNM-p 3 x 100 plays about 1.6 times fewer episodes per second than 1 x 100, and MNM-g
# 1 x 100 through the fused kernel about as many as MNM-p 1 x 100 (14.96 and 15.30 at 16
# per update: benchmarks/results/maze_mnm_g).
# Stages are multiples of the evaluation interval, where the runs save their checkpoints.
MAZE_EPISODES = 100_000
MAZE_EVAL_INTERVAL = 2_000
MAZE_STAGE_EPISODES = {
    "lstm": 50_000,
    "mnm_p-1x100": 20_000,
    "mnm_g-1x100": 20_000,
    "mnm_p-3x100": 12_000,
}


def maze_table(options):
    """The maze at 100,000 episodes: LSTM, MNM-p and MNM-g 1 x 100, the paper's MNM-p 3 x
    100, each run recorded in stages of `MAZE_STAGE_EPISODES`, evaluated on the held-out
    mazes every `MAZE_EVAL_INTERVAL` episodes (the script's other defaults: 16 episodes per
    update, learning rate 1e-4 per episode of an update)."""
    variants = (
        ("lstm", "lstm", 1),
        ("mnm_p-1x100", "mnm_p", 1),
        ("mnm_g-1x100", "mnm_g", 1),
        ("mnm_p-3x100", "mnm_p", 3),
    )
    return [
        RunSpec(
            f"maze-{label}-{MAZE_EPISODES}-seed{seed}",
            "examples.maze_a2c",
            dict(
                model=model,
                memory_layers=layers,
                num_episodes=MAZE_EPISODES,
                eval_interval=MAZE_EVAL_INTERVAL,
                seed=seed,
            ),
            stages=tuple(range(stage, MAZE_EPISODES, stage)),
        )
        for label, model, layers in variants
        for stage in (MAZE_STAGE_EPISODES[label],)
        for seed in SEEDS
    ]


def babi_paper_table(options):
    """The paper's bAbI run: 20 tasks jointly at the paper's sizes (the script's defaults)."""
    return [
        RunSpec(
            f"babi-paper-{model}-seed{seed}",
            "examples.babi",
            dict(data_dir=options.babi_data_dir, model=model, seed=seed),
        )
        for model in ("mnm_p", "mnm_g")
        for seed in SEEDS
    ]


def maze_paper_table(options):
    """The paper's maze budget: 250,000 episodes, MNM-p 3 x 100 and the LSTM."""
    variants = (("lstm", "lstm", 1), ("mnm_p-3x100", "mnm_p", 3))
    return [
        RunSpec(
            f"maze-{label}-250000-seed{seed}",
            "examples.maze_a2c",
            dict(model=model, memory_layers=layers, num_episodes=250_000, seed=seed),
        )
        for label, model, layers in variants
        for seed in SEEDS
    ]


# Episodes of each run of the maze_regime table, so that the slowest setting fits in 90
# minutes on a 2-core CPU: MNM-p 1 x 100 at one episode per update played 1.9 episodes/s
# there (200 episodes with compilation and one evaluation; the LSTM 3.3), so 8,000 episodes
# take about 72 minutes.
MAZE_REGIME_EPISODES = 8000
MAZE_REGIME_BATCHES = (1, 4, 16)


def maze_regime_table(options):
    """Episodes per update for the maze: the reference makes one update per episode
    (batch 1) at learning rate 1e-4; the LSTM and MNM-p 1 x 100 at 1, 4 and 16 episodes per
    update, the learning rate scaled in proportion (1e-4 times the episodes per update),
    `MAZE_REGIME_EPISODES` episodes, 2 seeds (`results.maze_regime_table` compares the
    reward reached per episode and per second of training)."""
    return [
        RunSpec(
            f"maze-regime-{label}-b{batch}-seed{seed}",
            "examples.maze_a2c",
            dict(
                model=model,
                memory_layers=1,
                batch_size=batch,
                learning_rate=1e-4 * batch,
                num_episodes=MAZE_REGIME_EPISODES,
                seed=seed,
            ),
        )
        for label, model in (("lstm", "lstm"), ("mnm_p-1x100", "mnm_p"))
        for batch in MAZE_REGIME_BATCHES
        for seed in SEEDS[:2]
    ]


TABLES = {
    "normalize_writes": normalize_writes_table,
    "demo": demo_table,
    "dictionary": dictionary_table,
    "dictionary_hard": dictionary_hard_table,
    "double_copy": _task_table("double_copy"),
    "priority_sort": _task_table("priority_sort"),
    "babi_task1": babi_task1_table,
    "babi_tasks": babi_tasks_table,
    "babi_joint": babi_joint_table,
    "maze": maze_table,
    "babi_paper": babi_paper_table,
    "maze_paper": maze_paper_table,
    "maze_regime": maze_regime_table,
}


# ----------------------------------------------------------------------------- configs


def script_config(spec, runs_dir):
    """The script's ``Config`` of ``spec``, with ``model_dir`` = ``runs_dir/NAME``."""
    module = importlib.import_module(spec.script_module)
    return module.Config(**spec.overrides, model_dir=os.path.join(runs_dir, spec.name))


def _comparable(config, script):
    """The config as its JSON record holds it, without the fields of the machine."""
    values = json.loads(json.dumps(dataclasses.asdict(config)))
    return {k: v for k, v in values.items() if k not in script.machine_fields}


def config_difference(expected, recorded):
    """The fields whose values differ between two config dicts, sorted."""
    return sorted(k for k in set(expected) | set(recorded) if expected.get(k) != recorded.get(k))


def flag_arguments(overrides, model_dir):
    """The command-line flags of ``overrides`` and ``model_dir`` (None values omitted)."""
    arguments = []
    for name, value in {**overrides, "model_dir": model_dir}.items():
        if value is None:
            continue
        if isinstance(value, bool):
            arguments.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, tuple | list):
            arguments.append(f"--{name}={','.join(str(v) for v in value)}")
        else:
            arguments.append(f"--{name}={value}")
    return arguments


# ------------------------------------------------------------------------------ status


@dataclasses.dataclass
class Run:
    """A spec with its config, where its record goes and what state it is in."""

    spec: RunSpec
    config: typing.Any
    script: Script
    model_dir: str
    destination: str
    status: str = "to do"  # "done", "partial", "finished" (not collected), "to do", "conflict"
    steps_done: int = 0
    conflict: tuple = ()
    replaces: int | None = None  # the protocol of an older committed record it replaces
    deadline: float | None = None  # seconds its process may run (`run_deadline`); None: no limit
    cpu: int | None = None  # the core its process is pinned to (``--parallel`` > 1)

    recorded: int | None = None  # the budget of the committed record of an earlier stage
    diverged: int | None = None  # the step at which its record says training diverged
    stopped_early: int | None = None  # the step at which early stopping ended it
    resume_archive: str | None = None  # the committed state it resumes from (`unpack_resume`)

    @property
    def budget(self):
        """The run's whole budget (steps; maze: episodes)."""
        return getattr(self.config, self.script.budget)

    @property
    def next_budget(self):
        """What the next invocation trains to: the first stage above the steps its
        ``model_dir`` has trained, else the whole budget. (A clone with the committed record
        of a stage but not the run's checkpoints trains from the start again, stage by
        stage; a record below the committed one's budget is not collected.)"""
        return next((s for s in self.spec.stages if s > self.steps_done), self.budget)


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def trained_steps(model_dir):
    """Steps (maze: episodes) in ``model_dir``'s history (`results.read_history`); 0 if none."""
    return results.last_step(results.read_history(model_dir))


def _record_state(run, path):
    """(the record at ``path``, the fields where its config differs from the run's).

    A field that the record lacks counts at its default: a field added to a script after
    the record was written defaults to the earlier behaviour (``meta_loss_weight``: 1.0).
    """
    record = _read_json(path)
    defaults = {
        field.name: field.default
        for field in dataclasses.fields(run.config)
        if field.default is not dataclasses.MISSING
    }
    written = {**json.loads(json.dumps(defaults)), **record.get("config", {})}
    recorded = {k: v for k, v in written.items() if k not in run.script.machine_fields}
    difference = config_difference(_comparable(run.config, run.script), recorded)
    return record, difference


def _ended(run, record, difference):
    """``(step, how)`` when ``record`` (of ``run``: its config may differ in the budget field
    only) says its training ended below its budget, else None: ``how`` is ``"diverged"``
    (`examples.training.RunRecorder.diverged`: the same seed diverges again at that step
    whatever the budget above it) or ``"stopped_early"`` (early stopping ended it:
    `examples.training.SelectBest`, no improvement since). Such a record ends the run."""
    if not set(difference) <= {run.script.budget}:
        return None
    for how in ("diverged", "stopped_early"):
        if record.get(how):
            step = int(record[how]["step"])
            return (step, how) if step <= run.budget else None
    return None


def _end(run, status, ended):
    """``run`` with ``status`` ("done" or "finished") at the step its record ended
    (`_ended`)."""
    step, how = ended
    run.status, run.steps_done = status, step
    setattr(run, how, step)
    return run


def _recorded_budget(run, record, difference):
    """The budget ``record`` was trained to when it is a record of ``run`` (its whole budget,
    or one of its stages: the config may then differ in the budget field only), else None."""
    budget = int(record.get("train_steps", -1))
    if not difference and budget == run.budget:
        return budget
    if set(difference) == {run.script.budget} and budget in run.spec.stages:
        return budget
    return None


def check_stages(spec):
    """Raises ValueError unless ``spec.stages`` increase and lie below the run's budget."""
    stages = tuple(spec.stages)
    if not stages:
        return
    budget = spec.overrides.get(SCRIPTS[spec.script_module].budget)
    valid = all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in stages)
    if not valid or list(stages) != sorted(set(stages)) or budget is None or stages[-1] >= budget:
        raise ValueError(
            f"`stages` of the run {spec.name!r} must be increasing positive integers below "
            f"its budget ({budget}); received {stages!r}."
        )


def plan_run(spec, options):
    """The `Run` of ``spec``: its config, and its status from the records and model_dir.

    A staged run (``spec.stages``) whose committed record is of an earlier stage is
    "partial" or "to do" (``recorded``: that stage), and its next invocation trains to
    `Run.next_budget`; a record of a stage in its ``model_dir``, beyond the committed one,
    is "finished" (to collect) like a whole run's.
    """
    check_stages(spec)
    script = SCRIPTS[spec.script_module]
    model_dir = os.path.join(options.runs_dir, spec.name)
    run = Run(
        spec,
        script_config(spec, options.runs_dir),
        script,
        model_dir,
        os.path.join(options.results_root, "results", script.task, spec.name),
    )
    committed = os.path.join(run.destination, "metrics.json")
    if os.path.exists(committed):
        record, difference = _record_state(run, committed)
        budget = _recorded_budget(run, record, difference)
        if int(record.get("protocol", 1)) != results.PROTOCOL:
            # A record of an older protocol measured another objective: the run is trained
            # again under this one, and its record replaces the old.
            run.replaces = int(record.get("protocol", 1))
        elif (ended := _ended(run, record, difference)) is not None:
            return _end(run, "done", ended)
        elif budget is None and difference:
            run.status, run.conflict = "conflict", tuple(difference)
            return run
        elif budget == run.budget:
            run.status, run.steps_done = "done", run.budget
            return run
        elif budget is not None:
            run.recorded = budget
    invocations = os.path.join(model_dir, "invocations.json")
    if os.path.exists(invocations):
        protocols = {int(i.get("protocol", 1)) for i in _read_json(invocations)}
        if protocols != {results.PROTOCOL}:
            run.status = "conflict"
            run.conflict = (f"model_dir holds a run of protocol {min(protocols)}",)
            return run
    finished = os.path.join(model_dir, "metrics.json")
    if os.path.exists(finished):
        record, difference = _record_state(run, finished)
        ended = _ended(run, record, difference)
        if ended is not None:
            return _end(run, "finished", ended)
        budget = _recorded_budget(run, record, difference)
        if budget is not None and budget > (run.recorded or 0):
            run.status, run.steps_done = "finished", budget
            return run
    run.steps_done = trained_steps(model_dir)
    archive = os.path.join(run.destination, RESUME_ARCHIVE)
    if run.recorded is not None and run.steps_done < run.recorded and os.path.exists(archive):
        # A clone without the run's model_dir: it resumes from the committed state (of the
        # recorded stage, or of a later checkpoint below the next stage).
        run.resume_archive, run.steps_done = archive, archive_steps(archive)
    run.status = "partial" if run.steps_done else "to do"
    return run


def table_runs(options):
    """The `Run`s of ``options.table`` (those whose name contains ``options.only``)."""
    specs = TABLES[options.table](options)
    if options.only:
        specs = [s for s in specs if options.only in s.name]
    return [plan_run(spec, options) for spec in specs]


# ---------------------------------------------------------------------------- estimate


def _as_json(value):
    return json.loads(json.dumps(value))


# A record measures the speed of a run only at the same sizes: those of the network, the
# batch and the sequences (a dictionary's support set and sequence length set its length).
SIZE_FIELDS = ("units", "memory_units", "memory_layers", "key_size", "num_heads")
SIZE_FIELDS += ("batch_size", "tasks", "support_size", "sequence_length")


# The network's sizes: an algorithmic record of the same model and these sizes on another
# task or task shape gives an estimate scaled by the episode lengths (`episode_length`).
NETWORK_FIELDS = ("units", "memory_units", "memory_layers", "key_size", "num_heads")
NETWORK_FIELDS += ("batch_size",)


def episode_length(config):
    """The episode length T of an algorithmic task's config (a dict: ``task`` and, for
    dictionary inference, ``support_size`` and ``sequence_length``), or None."""
    from mnm_keras.datasets import algorithmic

    task = config.get("task")
    shape = {}
    if task == "dictionary":
        shape = {k: config.get(k) for k in ("support_size", "sequence_length")}
    try:
        return algorithmic.get_task(task, **shape).length
    except (KeyError, TypeError, ValueError):
        return None


def sequence_length(record_task, config):
    """What a step's time grows with, from a config (a dict): an algorithmic task's episode
    length (`episode_length`), a bAbI run's mean story length (`babi_story_length`; no
    ``tasks``: all 20); None for another script or an unknown task."""
    if record_task == "algorithmic":
        return episode_length(config)
    if record_task == "babi":
        return babi_story_length(config.get("tasks") or BABI_STORIES)
    return None


def seconds_per_step(run, records):
    """(mean wall seconds per step of the committed records like ``run``, like) or (None, False).

    Like: the same record task, model and sizes (``SIZE_FIELDS``; for the algorithmic
    tasks also the same task); else (``like`` False) records of the same model and network
    (``NETWORK_FIELDS``) on other algorithmic or bAbI tasks or task shapes, their time per
    step scaled by the ratio of the `sequence_length`s (a recurrent step costs the same at
    every position: time grows linearly with the length); else the same task and model at
    other sizes, else any record of the same record task.
    """

    def speed(group):
        values = [
            r.wall_seconds / r.train_steps for r in group if r.train_steps > 0 and not r.diverged
        ]
        return sum(values) / len(values) if values else None

    same_task = [r for r in records if r.task == run.script.task]
    like = [r for r in same_task if r.config.get("model") == run.config.model]
    if run.script.task == "algorithmic":
        like = [r for r in like if r.config.get("task") == run.config.task]
    sized = [
        r
        for r in like
        if all(r.config.get(f) == _as_json(getattr(run.config, f, None)) for f in SIZE_FIELDS)
    ]
    if speed(sized) is not None:
        return speed(sized), True
    shape = {k: getattr(run.config, k, None) for k in ("task", "support_size", "sequence_length")}
    length = sequence_length(
        run.script.task, {**shape, "tasks": getattr(run.config, "tasks", None)}
    )
    if length:
        scaled = [
            speed([r]) * length / sequence_length(r.task, r.config)
            for r in same_task
            if r.config.get("model") == run.config.model
            and all(
                r.config.get(f) == _as_json(getattr(run.config, f, None)) for f in NETWORK_FIELDS
            )
            and sequence_length(r.task, r.config)
            and speed([r]) is not None
        ]
        if scaled:
            return sum(scaled) / len(scaled), False
    if speed(like) is not None:
        return speed(like), False
    return speed(same_task), False


def format_seconds(seconds):
    """``seconds`` as ``1 h 05 min``, ``12 min`` or ``40 s``; "unknown" for None."""
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _status_text(run):
    if run.status == "conflict":
        return f"conflict ({', '.join(run.conflict)})"
    text = {
        "partial": f"partial ({run.steps_done} steps done)",
        "finished": "finished, to collect",
    }.get(run.status, run.status)
    if run.diverged is not None:
        text += f" (diverged at step {run.diverged:,})"
    if run.stopped_early is not None:
        text += f" (stopped early at step {run.stopped_early:,})"
    if run.recorded is not None:
        text += f", stage {run.recorded:,} recorded"
    if run.resume_archive is not None:
        text += f", resumes from its {RESUME_ARCHIVE}"
    if run.replaces is not None:
        text += f", replaces a protocol {run.replaces} record"
    return text


def _budget_text(run):
    if not run.spec.stages or run.status == "done":
        return f"{run.budget:,}"
    budget = run.steps_done if run.status == "finished" else run.next_budget
    return f"{budget:,} of {run.budget:,}"


def estimate(run, records, whole=False):
    """(seconds left or None, from records like it) of ``run``'s next invocation (``whole``:
    of all it has left, every stage): (0, True) when it is done or finished."""
    target = run.budget if whole else run.next_budget
    remaining = 0 if run.status in ("done", "finished") else target - run.steps_done
    if not remaining:
        return 0.0, True
    speed, like = seconds_per_step(run, records)
    return (None if speed is None else speed * remaining), like


def _estimate_text(run, seconds, like):
    if run.status in ("done", "finished"):
        return "-"
    return format_seconds(seconds) + ("" if like or seconds is None else " *")


def _aligned(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def window_plan(runs, records, hours, parallel=1):
    """What ``--hours=hours --parallel=parallel`` would start: ``{name: start seconds}``.

    The schedule of `run_table`, on the estimates (`estimate`): each of ``parallel`` slots
    takes the next run in the table's order when it is free; a run starts only if its
    estimate ends within the hours (`fits`); one of unknown speed holds its slot to their
    end. Done and finished runs take no time and are left out.
    """
    window = hours * 3600
    slots = [0.0] * parallel
    starts = {}
    for run in runs:
        if run.status in ("done", "finished"):
            continue
        slot = min(range(parallel), key=slots.__getitem__)
        seconds, _ = estimate(run, records)
        if not fits(run, records, window - slots[slot])[0]:
            continue
        starts[run.spec.name] = slots[slot]
        slots[slot] = window if seconds is None else slots[slot] + seconds
    return starts


class TimeLeft(typing.NamedTuple):
    """What `time_left` adds up."""

    seconds: float  # the estimates of the runs of known speed, summed
    unknown: int  # runs of unknown speed (no record to estimate them from)
    rough: bool  # whether an estimate comes from records of other models, tasks or sizes
    done: int  # runs done


def time_left(runs, records):
    """The training time ``runs`` still need, every stage, one after another on one core
    (`estimate` of the whole budget, from the speed of ``records``), and how many are done."""
    estimates = [estimate(run, records, whole=True) for run in runs]
    known = [seconds for seconds, _ in estimates if seconds is not None]
    return TimeLeft(
        seconds=sum(known),
        unknown=len(estimates) - len(known),
        rough=any(seconds is not None and not like for seconds, like in estimates),
        done=sum(run.status == "done" for run in runs),
    )


def tables_markdown(root, records):
    """The docs' table of the tables: per table its command, runs, runs done and the
    estimated training time of the rest, every stage, one run after another on one core,
    from the speed of ``records`` (`estimate`), as the command's ``--dry_run`` on a machine
    without any of the runs' ``model_dir`` (the committed records and their resume
    archives only). Rendered into the docs by `examples.results` (table ``reproduce``)."""
    runs_dir = os.path.join(root, "results", "_no_runs")  # no model_dir is read
    rows = []
    any_rough = False
    for name in TABLES:
        if name.startswith("_"):
            continue
        runs = table_runs(Config(table=name, runs_dir=runs_dir, results_root=root))
        left = time_left(runs, records)
        any_rough |= left.rough
        text = format_seconds(left.seconds) + (" *" if left.rough else "")
        if left.unknown:
            text = "" if left.unknown == len(runs) else text + " "
            text += f"(+ {left.unknown} runs of unknown speed)"
        elif left.done == len(runs):
            text = "-"
        command = f"`python -m examples.reproduce {name}`"
        rows.append(f"| {command} | {len(runs)} | {left.done} | {text} |")
    lines = [
        "| command | runs | done | training time left (one core) |",
        "|---|---|---|---|",
        *rows,
    ]
    if any_rough:
        lines += ["", "\\* From the speed of records of other models, tasks or sizes."]
    return "\n".join(lines) + "\n"


def dry_run_report(runs, records, hours=0.0, parallel=1):
    """The table printed by ``--dry_run``: name, status, budget and estimate per run (of a
    staged run: its next stage's), and the total time left, every stage counted (runs of
    unknown speed counted apart); with ``hours``, when each run would start under
    ``--hours`` and ``--parallel`` (`window_plan`; a staged run's next stage)."""
    rows = [("run", "status", "budget", "estimate")]
    plan = window_plan(runs, records, hours, parallel) if hours else None
    if plan is not None:
        rows[0] += (f"with --hours={hours:g} --parallel={parallel}",)
    for run in runs:
        seconds, like = estimate(run, records)
        row = (
            run.spec.name,
            _status_text(run),
            _budget_text(run),
            _estimate_text(run, seconds, like),
        )
        if plan is not None:
            if run.status in ("done", "finished"):
                when = "-"
            elif run.spec.name in plan:
                when = f"starts at {format_seconds(plan[run.spec.name])}"
            else:
                when = "does not fit"
            row += (when,)
        rows.append(row)
    left = time_left(runs, records)
    every_unknown = left.unknown and left.unknown == len(runs)
    total = "unknown" if every_unknown else format_seconds(left.seconds)
    summary = f"{len(runs)} runs, {left.done} done; estimated time left: {total}"
    if left.unknown:
        summary += f" (+ {left.unknown} runs of unknown speed)"
    if plan is not None:
        summary += f"; {len(plan)} would start within --hours={hours:g}"
    if left.rough:
        summary += "\n* from the speed of records of other models, tasks or sizes (none like it)"
    return "\n".join([*_aligned(rows), summary])


# --------------------------------------------------------------------- resume archives

# A staged run's state at its committed stage, beside its record: a clone holds the
# records but not the runs directory, so that the next stage resumes on any machine.
RESUME_ARCHIVE = "resume.tar.gz"
# Files of an archive whose text names the run's model_dir (`results.portable_text`).
_TEXT_SUFFIXES = (".json", ".jsonl", ".csv")


def _checkpoint_members(directory, relative):
    """The members of a TensorFlow checkpoint directory (one with a ``checkpoint`` state
    file): the latest checkpoint's files, and a state file that names only it."""
    import tensorflow as tf  # noqa: PLC0415 (only runs that checkpoint so need it)

    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        return []
    prefix = os.path.basename(latest)
    state = f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n'
    members = [(f"{relative}/checkpoint", state.encode())]
    for name in sorted(os.listdir(directory)):
        if name.startswith(prefix + "."):
            members.append((f"{relative}/{name}", os.path.join(directory, name)))
    return members


def _resume_members(model_dir, names):
    """(name in the archive, path on disk or bytes) of the entries ``names`` of ``model_dir``
    that exist, directories walked in sorted order."""
    members = []
    for name in names:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            members.append((name, path))
        elif os.path.exists(os.path.join(path, "checkpoint")):
            members.extend(_checkpoint_members(path, name))
        elif os.path.isdir(path):
            for parent, dirs, files in os.walk(path):
                dirs.sort()
                for file in sorted(files):
                    full = os.path.join(parent, file)
                    members.append((os.path.relpath(full, model_dir), full))
    return members


def pack_resume(model_dir, archive, names):
    """Writes ``archive`` (a ``.tar.gz``): the entries ``names`` of ``model_dir`` that a
    later invocation resumes from (`Script.resume_files`; of a TensorFlow checkpoint
    directory, the latest checkpoint only). The same state packs to the same bytes (sorted
    members, no times or owners), and text files name the model_dir as a committed record
    does (`results.portable_text`). Returns the archive's size in bytes."""
    source = os.path.abspath(model_dir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in _resume_members(model_dir, names):
            if isinstance(content, str):
                with open(content, "rb") as f:
                    content = f.read()
                if name.endswith(_TEXT_SUFFIXES):
                    content = results.portable_text(content.decode(), source).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    os.makedirs(os.path.dirname(os.path.abspath(archive)), exist_ok=True)
    partial = archive + ".partial"
    with open(partial, "wb") as f:
        # mtime=0: no time in the gzip header either.
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as compressed:
            compressed.write(buffer.getvalue())
    os.replace(partial, archive)
    return os.path.getsize(archive)


def archive_steps(archive):
    """The steps (maze: episodes) trained by the state in ``archive``: its history's last
    row's (`results.read_history`'s format); 0 without one."""
    with tarfile.open(archive, mode="r:gz") as tar:
        try:
            member = tar.extractfile(results.HISTORY_FILE)
        except KeyError:
            return 0
        return results.last_step(results.parse_history(member.read().decode().splitlines()))


def unpack_resume(archive, model_dir):
    """Unpacks ``archive`` (`pack_resume`) into ``model_dir``. A ``model_dir`` that exists
    (it trained fewer steps than the archive's stage) is first moved to
    ``model_dir.replaced``, where it is kept."""
    if os.path.exists(model_dir):
        aside = model_dir.rstrip(os.sep) + ".replaced"
        if os.path.exists(aside):
            shutil.rmtree(aside)
        os.replace(model_dir, aside)
        print(f"[reproduce] moved {model_dir} (fewer steps than {archive}) to {aside}", flush=True)
    os.makedirs(model_dir)
    with tarfile.open(archive, mode="r:gz") as tar:
        tar.extractall(model_dir, filter="data")


def prepare(run):
    """Before ``run``'s process starts: its ``model_dir`` from its committed archive, if it
    resumes from one (`plan_run`); raises RuntimeError unless the archive holds the run
    from its recorded stage to below its next one."""
    if run.resume_archive is None:
        return
    unpack_resume(run.resume_archive, run.model_dir)
    steps = trained_steps(run.model_dir)
    if not run.recorded <= steps < run.next_budget:
        raise RuntimeError(
            f"{run.resume_archive} holds a run trained to {steps:,} steps, not from the "
            f"committed record's {run.recorded:,} to below its next stage "
            f"({run.next_budget:,}): pack it again from the run's model_dir, or delete it to "
            "train the run from the start."
        )
    print(
        f"[reproduce] {run.spec.name}: resuming at {steps:,} from {run.resume_archive}",
        flush=True,
    )
    run.resume_archive = None


def keep_resume_state(run):
    """After ``run``'s record is collected: the archive of its state beside the record, if
    it stopped at a stage (`pack_resume`); removed once the whole budget is recorded or
    the run ended below it (diverged or stopped early: it is not trained again)."""
    archive = os.path.join(run.destination, RESUME_ARCHIVE)
    ended = run.diverged is not None or run.stopped_early is not None
    if not ended and run.steps_done < run.budget:
        size = pack_resume(run.model_dir, archive, run.script.resume_files)
        print(
            f"[reproduce] {run.spec.name}: packed its state into {archive} ({size:,} bytes)",
            flush=True,
        )
    elif os.path.exists(archive):
        os.remove(archive)


# --------------------------------------------------------------------------------- run


# The time a run's process gets beyond its estimate times the factor (start, evaluation).
DEADLINE_MARGIN_SECONDS = 600


def run_deadline(run, records, factor):
    """Seconds ``run``'s process may run: ``factor`` times its estimate (`estimate`) plus
    `DEADLINE_MARGIN_SECONDS`; None (no deadline) for a factor of 0, an unknown speed or an
    estimate from records of other sizes (a maze run at one episode per update is several
    times slower per episode than the records at 16)."""
    seconds, like = estimate(run, records)
    if not factor or seconds is None or not like:
        return None
    return factor * seconds + DEADLINE_MARGIN_SECONDS


def wait_for(command, name, deadline=None, cpu=None):
    """Runs ``command`` in the repository; returns its exit status, or None when it did not
    end within ``deadline`` seconds: then it is reported (naming the run ``name``) and
    killed with the processes it started (a process that has written its record but hangs
    at exit ignores SIGTERM). ``cpu``: the core the process (and its threads) is pinned to."""
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, preexec_fn=pin)
    try:
        return process.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        print(
            f"[reproduce] {name}: its process did not end within its deadline of "
            f"{format_seconds(deadline)} (--deadline_factor); killing it (pid {process.pid}).",
            flush=True,
        )
        return None
    finally:
        if process.poll() is None:  # the deadline, or an interrupt of this command
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def launch(run):
    """Trains (or resumes) ``run`` in its own process; returns the exit status, or None for
    a process still running at ``run.deadline`` (killed; `wait_for`)."""
    # The process runs in the repository: a relative model_dir is made relative to it.
    model_dir = run.model_dir
    if not os.path.isabs(model_dir):
        model_dir = os.path.relpath(os.path.abspath(model_dir), ROOT)
    overrides = {**run.spec.overrides, run.script.budget: run.next_budget}
    command = [
        sys.executable,
        "-m",
        run.spec.script_module,
        *flag_arguments(overrides, model_dir),
    ]
    where = "" if run.cpu is None else f" (core {run.cpu})"
    print(f"[reproduce] {run.spec.name}{where}: {' '.join(command[1:])}", flush=True)
    return wait_for(command, run.spec.name, run.deadline, run.cpu)


def check_conflicts(runs):
    """Raises ValueError naming every run whose committed record has another config, or
    whose model_dir holds a run of another training protocol."""
    conflicts = [run for run in runs if run.status == "conflict"]
    if conflicts:
        lines = [
            f"{run.model_dir}: the {run.conflict[0]} (this is protocol {results.PROTOCOL})"
            if run.conflict[0].startswith("model_dir")
            else f"{run.destination}/metrics.json: differs from the run {run.spec.name!r} "
            f"in {', '.join(run.conflict)}"
            for run in conflicts
        ]
        raise ValueError(
            "Committed records with another config, or model_dirs of another training "
            "protocol (move or delete them to rerun):\n" + "\n".join(lines)
        )


# The deadline of the second invocation of a run stopped at its deadline after its
# training had reached its budget: it resumes from the run's last checkpoint, trains what
# came after it (at most one checkpoint interval) and writes the record. It may end past
# ``--hours`` by this much.
FINISH_SECONDS = 900.0


def fits(run, records, seconds_left):
    """(whether ``run`` may start with ``seconds_left`` of ``--hours`` left, its deadline).

    Without a limit (None) every run starts with `run_deadline`'s deadline. With one, a
    run whose estimate (`estimate`) ends after the limit does not start; one of unknown
    speed starts with the time left as its deadline; the others get the earlier of their
    own deadline and the time left. Nothing starts once the time is up.
    """
    deadline = run.deadline
    if seconds_left is None:
        return True, deadline
    if seconds_left <= 0:
        return False, deadline
    seconds, _ = estimate(run, records)
    if seconds is not None and seconds > seconds_left:
        return False, deadline
    return True, seconds_left if deadline is None else min(deadline, seconds_left)


def run_table(options):
    """Runs what is unfinished in ``options.table``, collects it and renders the docs.

    Each run's process has a deadline (`run_deadline`; with ``--hours``, `fits`); a process
    still running then is killed, and its run counts as failed unless it had written its
    complete record; one whose history had reached its budget is invoked once more to write
    its record (`FINISH_SECONDS`). Each record is collected, and the docs rendered, as soon as its run
    ends. With ``--parallel=N``, N runs go at once, each process pinned to its own core,
    in the table's order.

    Returns:
      The names of the runs that failed (their process ended with an error, or did not end
      by its deadline without a complete record).
    """
    runs = table_runs(options)
    check_conflicts(runs)
    needs_records = options.deadline_factor or options.hours
    records = results.load_records(options.results_root) if needs_records else []
    started = time.perf_counter()
    lock = threading.Lock()
    queue = list(runs)
    failed = []

    def seconds_left():
        if not options.hours:
            return None
        return options.hours * 3600 - (time.perf_counter() - started)

    def next_run():
        with lock:
            return queue.pop(0) if queue else None

    def worker(cpu):
        while (run := next_run()) is not None:
            if run.status == "done":
                print(f"[reproduce] {run.spec.name}: done", flush=True)
                continue
            start = time.perf_counter()
            if run.status != "finished":
                run.deadline = run_deadline(run, records, options.deadline_factor)
                may_start, run.deadline = fits(run, records, seconds_left())
                if not may_start:
                    print(
                        f"[reproduce] {run.spec.name}: not started, its estimate does not fit "
                        f"in the {format_seconds(seconds_left())} left of --hours.",
                        flush=True,
                    )
                    continue
                run.cpu = cpu
                prepare(run)
                status = launch(run)
                planned = plan_run(run.spec, options)
                if (
                    status is None
                    and planned.status != "finished"
                    and planned.steps_done >= run.next_budget
                ):
                    # Stopped after its training reached the budget (its evaluation and
                    # record still to come): once more from its last checkpoint.
                    print(
                        f"[reproduce] {run.spec.name}: trained to {run.next_budget:,} but "
                        "stopped at its deadline before writing its record; writing it "
                        f"(a deadline of {format_seconds(FINISH_SECONDS)}).",
                        flush=True,
                    )
                    run.deadline = FINISH_SECONDS
                    status = launch(run)
                    planned = plan_run(run.spec, options)
                if planned.diverged is not None and planned.status == "finished":
                    # Not a failure of the table: the run's outcome, recorded as such.
                    print(
                        f"[reproduce] {run.spec.name}: training diverged at step "
                        f"{planned.diverged:,}; its record says so and is collected.",
                        flush=True,
                    )
                elif planned.stopped_early is not None and planned.status == "finished":
                    print(
                        f"[reproduce] {run.spec.name}: early stopping ended training at step "
                        f"{planned.stopped_early:,}; its record is the run's and is collected.",
                        flush=True,
                    )
                elif status is None and planned.status == "finished":
                    print(
                        f"[reproduce] {run.spec.name}: its record was complete before the "
                        "deadline; collected.",
                        flush=True,
                    )
                elif status != 0:
                    reason = "did not end by its deadline" if status is None else f"exit {status}"
                    print(f"[reproduce] {run.spec.name}: FAILED ({reason})", flush=True)
                    with lock:
                        failed.append(run.spec.name)
                    continue
                run = planned
            with lock:
                if run.status == "finished":
                    results.collect(run.model_dir, run.destination)
                    keep_resume_state(run)
                    seconds = time.perf_counter() - start
                    print(f"[reproduce] {run.spec.name}: collected ({seconds:.0f} s)", flush=True)
                    for path in results.render(options.results_root):
                        print(f"[reproduce] rendered {path}", flush=True)
                elif run.recorded is not None:  # a clone without the run's checkpoints
                    print(
                        f"[reproduce] {run.spec.name}: trained to {run.steps_done:,}, below "
                        f"the committed record's stage ({run.recorded:,}); not collected.",
                        flush=True,
                    )
                else:
                    print(f"[reproduce] {run.spec.name}: FAILED (no record)", flush=True)
                    failed.append(run.spec.name)
                    continue
                if run.spec.stages:
                    after = plan_run(run.spec, options)
                    if after.status != "done":  # its next stage: before the other runs,
                        # or (--breadth_first) after them
                        queue.insert(len(queue) if options.breadth_first else 0, after)

    if options.parallel == 1:
        worker(None)
    else:
        cores = sorted(os.sched_getaffinity(0))[: options.parallel]
        threads = [threading.Thread(target=worker, args=(cpu,)) for cpu in cores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for path in results.render(options.results_root):
        print(f"[reproduce] rendered {path}", flush=True)
    return sorted(failed, key=[run.spec.name for run in runs].index)


def run(options):
    """Prints the dry-run table of ``options.table``, or runs it; returns the failed runs."""
    if options.table not in TABLES:
        raise ValueError(f"Unknown table {options.table!r}; tables: {', '.join(TABLES)}.")
    if options.dry_run:
        records = results.load_records(options.results_root)
        report = dry_run_report(table_runs(options), records, options.hours, options.parallel)
        print(report, flush=True)
        return []
    return run_table(options)


def _options(argv, flag_values):
    """The `Config` of the parsed flags and the positional table argument."""
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(Config)}
    positional = argv[1:]
    if len(positional) > 1 or (positional and values["table"] not in (None, positional[0])):
        raise app.UsageError(f"Pass one table; received {' '.join(positional)}.")
    if positional:
        values["table"] = positional[0]
    if values["table"] not in TABLES:
        received = (
            "No table given" if values["table"] is None else f"Unknown table {values['table']!r}"
        )
        raise app.UsageError(
            f"{received}. Usage: python -m examples.reproduce TABLE [--dry_run] "
            f"[--only=TEXT] [--hours=H] [--parallel=N]; tables: {', '.join(TABLES)}."
        )
    try:
        return Config(**values)
    except ValueError as error:
        raise app.UsageError(str(error)) from error


def main():
    """Defines the flags and runs the table under ``absl.app``."""
    define_flags(Config)

    def _main(argv):
        options = _options(argv, flags.FLAGS)
        try:
            failed = run(options)
        except ValueError as error:  # a conflicting record, a config a script refuses
            sys.exit(f"reproduce: {error}")
        if failed:
            print(f"[reproduce] failed: {', '.join(failed)}", flush=True)
            sys.exit(1)

    app.run(_main)


if __name__ == "__main__":
    main()
