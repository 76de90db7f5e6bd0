"""examples/reproduce.py: the tables' configs, done runs, a tiny table end to end, dry run."""

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
from absl import flags

from examples import config_flags, reproduce, results
from tests.babi_data import SHARED, needs_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    task="dictionary",
    model="lstm",
    units=8,
    memory_units=6,
    key_size=6,
    batch_size=4,
    eval_episodes=8,
    train_steps=2,
    steps_per_epoch=1,
)
MARKER = "<!-- results table: algorithmic -->\n<!-- end of results table -->\n"
RUN_COUNTS = {
    "normalize_writes": 12,
    "demo": 6,
    "dictionary": 24,
    "dictionary_hard": 18,
    "double_copy": 12,
    "priority_sort": 12,
    "babi_task1": 12,
    "babi_tasks": 48,
    "babi_joint": 1,
    "maze": 12,
    "babi_paper": 6,
    "maze_paper": 6,
    "maze_regime": 12,
}


def tiny_table(options):
    """Two seeds of a tiny LSTM on dictionary inference, two steps each."""
    return [
        reproduce.RunSpec(f"tiny-lstm-seed{seed}", "examples.algorithmic", {**TINY, "seed": seed})
        for seed in (0, 1)
    ]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Options of the tiny table in tmp dirs (a docs/ with an algorithmic table)."""
    monkeypatch.setitem(reproduce.TABLES, "_tiny", tiny_table)
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "tables.md").write_text(MARKER)
    return reproduce.Config(table="_tiny", runs_dir=str(tmp_path / "runs"), results_root=str(root))


@pytest.mark.parametrize("table", sorted(RUN_COUNTS))
def test_every_table_builds_configs_its_scripts_accept(table):
    options = reproduce.Config(table=table)
    specs = reproduce.TABLES[table](options)
    assert len(specs) == RUN_COUNTS[table]
    assert len({spec.name for spec in specs}) == len(specs)
    for spec in specs:
        config = reproduce.script_config(spec, "runs/x")
        assert config.model_dir == os.path.join("runs/x", spec.name)
        # The subprocess's flags parse back to the same config.
        values = flags.FlagValues()
        module = importlib.import_module(spec.script_module)
        config_flags.define_flags(module.Config, values)
        values(["prog", *reproduce.flag_arguments(spec.overrides, config.model_dir)])
        assert config_flags.config_from_flags(module.Config, values) == config


def test_the_maze_regime_scales_the_learning_rate_with_the_episodes_per_update():
    specs = reproduce.maze_regime_table(reproduce.Config(table="maze_regime"))
    settings = {(s.overrides["model"], s.overrides["batch_size"]) for s in specs}
    assert settings == {(m, b) for m in ("lstm", "mnm_p") for b in (1, 4, 16)}
    for spec in specs:
        assert spec.overrides["learning_rate"] == pytest.approx(1e-4 * spec.overrides["batch_size"])
        assert spec.name.startswith("maze-regime-")


def test_one_name_per_configuration_across_tables():
    """A configuration two tables share is one run: trained once, recorded once."""
    names = {}  # (script, config without model_dir) -> run name
    options = reproduce.Config()
    for table in sorted(RUN_COUNTS):
        for spec in reproduce.TABLES[table](options):
            script = reproduce.SCRIPTS[spec.script_module]
            config = reproduce.script_config(spec, "runs/x")
            key = (spec.script_module, json.dumps(reproduce._comparable(config, script)))
            assert names.setdefault(key, spec.name) == spec.name, (table, spec.name)
    assert len(set(names.values())) == len(names)


@pytest.mark.parametrize("table", ["normalize_writes", "demo", "dictionary"])
def test_committed_records_count_as_done_unless_of_an_older_protocol(table, tmp_path):
    options = reproduce.Config(table=table, runs_dir=str(tmp_path), results_root=ROOT)
    runs = reproduce.table_runs(options)
    committed = [r for r in runs if os.path.exists(os.path.join(r.destination, "metrics.json"))]
    assert committed, "no committed record of this table"
    for run in committed:
        with open(os.path.join(run.destination, "metrics.json")) as f:
            record = json.load(f)
        protocol = record.get("protocol", 1)
        if protocol == results.PROTOCOL and record["train_steps"] in run.spec.stages:
            # A stage of a staged run: the next invocation trains on towards its budget,
            # from the committed archive of its state where there is one (`unpack_resume`),
            # else from the start.
            archive = os.path.join(run.destination, reproduce.RESUME_ARCHIVE)
            if os.path.exists(archive):
                assert (run.status, run.steps_done) == ("partial", record["train_steps"])
                assert run.resume_archive == archive, run.spec.name
            else:
                assert run.status == "to do", run.spec.name
            assert run.recorded == record["train_steps"], run.spec.name
        elif protocol == results.PROTOCOL:
            assert (run.status, run.replaces) == ("done", None), run.spec.name
        else:  # trained again under the current protocol; its record replaces the old
            assert (run.status, run.replaces) == ("to do", protocol), run.spec.name


def test_tiny_table_runs_collects_renders_then_skips(tiny, monkeypatch):
    launched = []
    launch = reproduce.launch
    monkeypatch.setattr(reproduce, "launch", lambda run: launched.append(run) or launch(run))
    assert reproduce.run(tiny) == []
    assert len(launched) == 2
    records = [
        os.path.join(tiny.results_root, "results", "algorithmic", f"tiny-lstm-seed{seed}")
        for seed in (0, 1)
    ]
    for seed, path in enumerate(records):
        with open(os.path.join(path, "metrics.json")) as f:
            record = json.load(f)
        assert record["train_steps"] == 2 and record["config"]["seed"] == seed
    docs = (os.path.join(tiny.results_root, "docs", "tables.md"),)
    with open(docs[0]) as f:
        assert "| dictionary inference (4, 1) | LSTM |" in f.read()
    mtimes = [os.path.getmtime(os.path.join(p, "metrics.json")) for p in records]

    # A rerun runs nothing.
    assert reproduce.run(tiny) == []
    assert len(launched) == 2
    assert [os.path.getmtime(os.path.join(p, "metrics.json")) for p in records] == mtimes

    # A committed record with another config is an error naming the run and the field.
    path = os.path.join(records[1], "metrics.json")
    with open(path) as f:
        record = json.load(f)
    record["config"]["units"] = 9
    with open(path, "w") as f:
        json.dump(record, f)
    with pytest.raises(ValueError, match=r"tiny-lstm-seed1.* in units"):
        reproduce.run(tiny)
    assert len(launched) == 2

    # A record of an older protocol is trained again; a model_dir that holds a run of an
    # older protocol is not resumed (one run, two objectives) but named.
    del record["protocol"]
    with open(path, "w") as f:
        json.dump(record, f)
    run = reproduce.table_runs(tiny)[1]
    assert (run.status, run.replaces) == ("finished", 1)
    invocations = os.path.join(run.model_dir, "invocations.json")
    with open(invocations) as f:
        old = [{k: v for k, v in i.items() if k != "protocol"} for i in json.load(f)]
    with open(invocations, "w") as f:
        json.dump(old, f)
    with pytest.raises(ValueError, match=r"tiny-lstm-seed1: .* holds a run of protocol 1"):
        reproduce.run(tiny)
    assert len(launched) == 2


def test_dry_run_lists_statuses_and_estimates(tiny, capsys):
    done, partial = tiny_table(tiny)
    config = reproduce.script_config(done, tiny.runs_dir)
    destination = os.path.join(tiny.results_root, "results", "algorithmic", done.name)
    os.makedirs(destination)
    record = {
        "task": "algorithmic",
        "config": dataclasses.asdict(config),
        "results": {"eval_sequence_error": 0.5, "eval_symbol_error": 0.25},
        "train_steps": 2,
        "wall_seconds": 30.0,
        "history": [],
        "protocol": results.PROTOCOL,
    }
    with open(os.path.join(destination, "metrics.json"), "w") as f:
        json.dump(record, f)
    model_dir = os.path.join(tiny.runs_dir, partial.name)
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "history.jsonl"), "w") as f:
        f.write('{"epoch": 0, "epoch_seconds": 15.0, "step": 1}\n')

    assert reproduce.run(dataclasses.replace(tiny, dry_run=True)) == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "status", "budget", "estimate"]
    assert lines[1].split() == ["tiny-lstm-seed0", "done", "2", "-"]
    # 15 s per step (30 s over 2 steps), 1 step left.
    assert lines[2].split() == [
        "tiny-lstm-seed1",
        "partial",
        "(1",
        "steps",
        "done)",
        "2",
        "15",
        "s",
    ]
    assert lines[3] == "2 runs, 1 done; estimated time left: 15 s"
    assert not os.path.exists(
        os.path.join(tiny.results_root, "results", "algorithmic", partial.name)
    )


def test_unknown_speed_and_format():
    assert reproduce.format_seconds(None) == "unknown"
    assert reproduce.format_seconds(59.4) == "59 s"
    assert reproduce.format_seconds(600) == "10 min"
    assert reproduce.format_seconds(3 * 3600 + 5 * 60) == "3 h 05 min"


@pytest.mark.parametrize("entry", [["-m", "examples.reproduce"], ["examples/reproduce.py"]])
def test_bad_table_name_gives_usage(entry):
    result = subprocess.run(
        [sys.executable, *entry, "no_such_table", "--dry_run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Unknown table 'no_such_table'" in output
    assert "tables: normalize_writes, demo, dictionary" in output
    assert "Traceback" not in output


def test_an_estimate_uses_records_of_the_same_sizes_only():
    import types

    from examples.results import Record

    def record(units, seconds):
        config = {"model": "lstm", "task": "dictionary", "units": units, "batch_size": 4}
        return Record("r", "algorithmic", config, {}, 100, seconds, [])

    config = types.SimpleNamespace(model="lstm", task="dictionary", units=8, batch_size=4)
    run = types.SimpleNamespace(script=types.SimpleNamespace(task="algorithmic"), config=config)
    assert reproduce.seconds_per_step(run, [record(8, 10.0), record(64, 90.0)]) == (0.1, True)
    assert reproduce.seconds_per_step(run, [record(64, 90.0)]) == (0.9, False)


# The tables at the paper's scale: their --dry_run gives the duration of runs longer than
# a sitting on this machine, as a plan; every other table's stages fit in one.
PAPER_SCALE_TABLES = ("babi_paper", "maze_paper")


@pytest.mark.parametrize("table", sorted(set(RUN_COUNTS) - set(PAPER_SCALE_TABLES)))
def test_every_stage_fits_in_90_minutes_by_the_committed_records(table, tmp_path):
    options = reproduce.Config(table=table, runs_dir=str(tmp_path), results_root=ROOT)
    records = results.load_records(ROOT)
    for run in reproduce.table_runs(options):
        speed, _ = reproduce.seconds_per_step(run, records)
        assert speed is not None, run.spec.name
        budgets = [0, *run.spec.stages, run.budget]
        longest = max(later - earlier for earlier, later in zip(budgets, budgets[1:]))
        assert speed * longest < 90 * 60, (run.spec.name, speed * longest / 60)


def test_the_lstm_trains_on_past_its_100000_step_record_on_4_1():
    specs = {s.name: s for s in reproduce.dictionary_table(reproduce.Config(table="dictionary"))}
    lstm, salu = specs["dictionary_4_1-lstm-seed0"], specs["dictionary_4_1-salu-seed0"]
    assert lstm.overrides["train_steps"] == 500_000
    # The committed records of 100,000, 150,000 and 200,000 steps are stages.
    assert {100_000, 150_000, 200_000} <= set(lstm.stages)
    late = [stage for stage in lstm.stages if stage >= 100_000] + [500_000]
    assert all(b - a == 50_000 for a, b in zip(late, late[1:]))
    assert salu.overrides["train_steps"] == 100_000
    assert specs["dictionary_8_4-lstm-seed0"].overrides["train_steps"] == 20_000


def test_the_hard_dictionary_table_is_the_memory_models_on_12_8_and_16_12():
    specs = reproduce.dictionary_hard_table(reproduce.Config(table="dictionary_hard"))
    cells = {
        (s.overrides["support_size"], s.overrides["sequence_length"], s.overrides["model"])
        for s in specs
    }
    shapes, models = ((12, 8), (16, 12)), ("mnm_p", "mnm_g", "salu")
    assert cells == {(*shape, model) for shape in shapes for model in models}
    assert {s.overrides["train_steps"] for s in specs} == {reproduce.DICTIONARY_STEPS}
    assert "init_from" not in specs[0].overrides  # from scratch: no curriculum


def test_an_estimate_for_longer_dictionary_sequences_is_not_like_a_shorter_one():
    import types

    from examples.results import Record

    def record(support_size, sequence_length, seconds):
        config = {"model": "mnm_p", "task": "dictionary", "units": 8}
        config.update(support_size=support_size, sequence_length=sequence_length)
        return Record("r", "algorithmic", config, {}, 100, seconds, [])

    config = types.SimpleNamespace(
        model="mnm_p", task="dictionary", units=8, support_size=8, sequence_length=4
    )
    run = types.SimpleNamespace(script=types.SimpleNamespace(task="algorithmic"), config=config)
    # Not like it, but scaled by the episode lengths: T = 19 for (4, 1), 89 for (8, 4).
    assert reproduce.episode_length(record(4, 1, 0).config) == 19
    assert reproduce.episode_length(record(8, 4, 0).config) == 89
    seconds, like = reproduce.seconds_per_step(run, [record(4, 1, 10.0)])
    assert (seconds, like) == (pytest.approx(0.1 * 89 / 19), False)
    assert reproduce.seconds_per_step(run, [record(4, 1, 10.0), record(8, 4, 30.0)]) == (0.3, True)
    # Another task (double copy of 50: T = 151) from the same network's dictionary records;
    # records of another network are not scaled.
    copy = types.SimpleNamespace(model="mnm_p", task="double_copy", units=8)
    run = types.SimpleNamespace(script=run.script, config=copy)
    seconds, like = reproduce.seconds_per_step(run, [record(4, 1, 10.0), record(8, 4, 30.0)])
    assert (seconds, like) == (pytest.approx((0.1 * 151 / 19 + 0.3 * 151 / 89) / 2), False)
    wider = record(4, 1, 10.0)
    wider.config["units"] = 100
    assert reproduce.seconds_per_step(run, [wider]) == (0.1, False)  # same model, any size


@needs_release
def test_the_babi_story_lengths_are_those_of_the_release():
    from mnm_keras.datasets import babi

    for task in (1, 3, 15):
        stories = babi.read_split(SHARED, "en-10k", "train", tasks=[task])
        mean = sum(len(story.tokens) for story in stories) / len(stories)
        assert reproduce.BABI_STORIES[task] == (len(stories), round(mean, 1)), task
    assert set(reproduce.BABI_STORIES) == set(range(1, 21))


def test_a_babi_estimate_scales_with_the_story_length():
    import types

    from examples.results import Record

    def record(tasks, seconds):
        config = {"model": "mnm_p", "tasks": tasks, "units": 8}
        return Record("r", "babi", config, {}, 100, seconds, [])

    config = types.SimpleNamespace(model="mnm_p", tasks=(3,), units=8)
    run = types.SimpleNamespace(script=types.SimpleNamespace(task="babi"), config=config)
    seconds, like = reproduce.seconds_per_step(run, [record([1], 10.0)])
    assert (seconds, like) == (pytest.approx(0.1 * 483.5 / 87.0), False)
    assert reproduce.seconds_per_step(run, [record([3], 50.0)]) == (0.5, True)
    # Tasks together: the mean over their stories (task 16 has 10,000 stories of 47 tokens).
    assert reproduce.babi_story_length((1, 16)) == pytest.approx(
        (2000 * 87.0 + 10000 * 47.0) / 12000
    )


def test_the_docs_table_of_tables_counts_runs_done_and_time_left(tiny, monkeypatch):
    text = reproduce.tables_markdown(ROOT, results.load_records(ROOT))
    for name, count in RUN_COUNTS.items():
        assert f"| `python -m examples.reproduce {name}` | {count} |" in text, name
    # The demo's runs are all recorded: nothing left.
    assert "| `python -m examples.reproduce demo` | 6 | 6 | - |" in text
    # The tiny table alone: unknown speed without records; with a record of the same
    # sizes at 0.5 s a step, its two runs of two steps take 2 s.
    monkeypatch.setattr(reproduce, "TABLES", {"tiny": tiny_table})
    root = tiny.results_root
    unknown = "| `python -m examples.reproduce tiny` | 2 | 0 | (+ 2 runs of unknown speed) |"
    assert unknown in reproduce.tables_markdown(root, [])
    config = dataclasses.asdict(reproduce.script_config(tiny_table(tiny)[0], tiny.runs_dir))
    record = results.Record("r", "algorithmic", config, {}, 100, 50.0, [])
    known = reproduce.tables_markdown(root, [record])
    assert "| `python -m examples.reproduce tiny` | 2 | 0 | 2 s |" in known
    assert "From the speed of records of other" not in known


HANGING_CHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('summary', flush=True); time.sleep(120)"
)


def test_a_child_that_does_not_end_is_reported_by_name_and_killed(capsys):
    start = time.perf_counter()
    status = reproduce.wait_for([sys.executable, "-c", HANGING_CHILD], "tiny-run", deadline=3)
    assert status is None and time.perf_counter() - start < 30
    out = capsys.readouterr().out
    assert "[reproduce] tiny-run: its process did not end within its deadline of 3 s" in out
    assert reproduce.wait_for([sys.executable, "-c", "pass"], "quick", deadline=60) == 0


def test_the_table_goes_on_past_a_run_that_does_not_end(tiny, monkeypatch, capsys):
    launched = []
    launch = reproduce.launch

    def hang_first(run):
        launched.append(run)
        if len(launched) == 1:  # the first run's process hangs before writing its record
            return reproduce.wait_for([sys.executable, "-c", HANGING_CHILD], run.spec.name, 2)
        return launch(run)

    monkeypatch.setattr(reproduce, "launch", hang_first)
    assert reproduce.run(tiny) == ["tiny-lstm-seed0"]
    out = capsys.readouterr().out
    assert "[reproduce] tiny-lstm-seed0: FAILED (did not end by its deadline)" in out
    assert "[reproduce] tiny-lstm-seed1: collected" in out
    # A run's deadline: its estimate times the factor, plus the margin; none when unknown
    # or estimated from records of other sizes (the tiny run's).
    records = reproduce.results.load_records(ROOT)
    tiny_run = reproduce.table_runs(tiny)[0]
    assert reproduce.estimate(tiny_run, records)[1] is False
    assert reproduce.run_deadline(tiny_run, records, 3.0) is None
    options = reproduce.Config(table="dictionary", runs_dir=tiny.runs_dir, results_root=ROOT)
    run = next(r for r in reproduce.table_runs(options) if reproduce.estimate(r, records)[1])
    seconds, _ = reproduce.estimate(run, records)
    assert reproduce.run_deadline(run, records, 3.0) == 3 * seconds + 600
    assert reproduce.run_deadline(run, records, 0.0) is None


def test_hours_start_only_what_fits_and_bound_the_deadline(monkeypatch):
    run = reproduce.Run(spec=None, config=None, script=None, model_dir="", destination="")
    monkeypatch.setattr(reproduce, "estimate", lambda run, records: (100.0, True))
    assert reproduce.fits(run, [], None) == (True, None)  # no --hours
    assert reproduce.fits(run, [], 99.0) == (False, None)  # the estimate ends after them
    assert reproduce.fits(run, [], 500.0) == (True, 500.0)
    run.deadline = 400.0
    assert reproduce.fits(run, [], 500.0) == (True, 400.0)
    assert reproduce.fits(run, [], 0.0)[0] is False  # the time is up
    monkeypatch.setattr(reproduce, "estimate", lambda run, records: (None, False))
    run.deadline = None
    assert reproduce.fits(run, [], 50.0) == (True, 50.0)  # unknown speed: stopped at the end


def test_hours_skip_a_run_that_does_not_fit(tiny, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "estimate", lambda run, records: (7200.0, True))
    launched = []
    monkeypatch.setattr(reproduce, "launch", lambda run: launched.append(run) or 0)
    options = dataclasses.replace(tiny, hours=1.0)
    assert reproduce.run(options) == []
    assert launched == []
    assert "tiny-lstm-seed0: not started, its estimate does not fit in the 1 h 00 min" in (
        capsys.readouterr().out
    )


def test_parallel_runs_go_at_once_each_pinned_to_a_core(tiny, monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    launched = []
    launch = reproduce.launch

    def record(run):
        launched.append(run.cpu)
        return launch(run)

    monkeypatch.setattr(reproduce, "launch", record)
    options = dataclasses.replace(tiny, parallel=2)
    assert reproduce.run(options) == []
    assert sorted(launched) == sorted(os.sched_getaffinity(0))[:2]
    for seed in (0, 1):
        path = os.path.join(tiny.results_root, "results", "algorithmic", f"tiny-lstm-seed{seed}")
        assert os.path.exists(os.path.join(path, "metrics.json"))


def test_a_pinned_child_runs_on_its_core_only():
    code = "import os, sys; sys.exit(0 if os.sched_getaffinity(0) == {0} else 3)"
    assert reproduce.wait_for([sys.executable, "-c", code], "pinned", deadline=60, cpu=0) == 0
    if len(os.sched_getaffinity(0)) > 1:  # the check can fail: unpinned, it sees every core
        assert reproduce.wait_for([sys.executable, "-c", code], "free", deadline=60) == 3


@pytest.mark.parametrize(
    "field, value, message",
    [("hours", -1.0, "hours"), ("parallel", 0, "parallel"), ("parallel", 1000, "CPU cores")],
)
def test_hours_and_parallel_are_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        reproduce.Config(table="demo", **{field: value})


def test_the_dry_run_plans_the_hours_window(tiny, monkeypatch, capsys):
    speeds = {"a": 100.0, "b": 100.0, "c": None, "d": 50.0}
    runs = [
        reproduce.Run(reproduce.RunSpec(name, "examples.algorithmic", {}), None, None, "", "")
        for name in speeds
    ]
    monkeypatch.setattr(
        reproduce,
        "estimate",
        lambda run, records, whole=False: (speeds.get(run.spec.name, 7200.0), True),
    )
    hours = 250 / 3600
    # One slot: c (unknown speed) holds it to the end, so d no longer fits.
    assert reproduce.window_plan(runs, [], hours) == {"a": 0.0, "b": 100.0, "c": 200.0}
    # Two slots: a and b at once; c after a, d after b.
    assert reproduce.window_plan(runs, [], hours, parallel=2) == {
        "a": 0.0,
        "b": 0.0,
        "c": 100.0,
        "d": 100.0,
    }
    runs[0].status = "done"  # a done run takes no time
    assert reproduce.window_plan(runs, [], hours)["b"] == 0.0
    # The report: the tiny table's runs (2 h each here) do not fit in one hour.
    options = dataclasses.replace(tiny, dry_run=True, hours=1.0)
    assert reproduce.run(options) == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-2:] == ["--hours=1", "--parallel=1"]
    assert lines[1].endswith("does not fit") and lines[2].endswith("does not fit")
    assert lines[3].endswith("0 would start within --hours=1")


def staged_table(options):
    """One tiny LSTM run of 3 steps, recorded after step 1 and step 2."""
    return [
        reproduce.RunSpec(
            "tiny-staged-seed0",
            "examples.algorithmic",
            {**TINY, "train_steps": 3, "seed": 0},
            stages=(1, 2),
        )
    ]


def _table_with_launches(tiny, monkeypatch, name, table):
    """Options of ``table`` (registered as ``name``) in the tiny fixture's dirs, and the
    list to which each launch appends the budget it trains to."""
    monkeypatch.setitem(reproduce.TABLES, name, table)
    launched = []
    launch = reproduce.launch
    monkeypatch.setattr(
        reproduce, "launch", lambda run: launched.append(run.next_budget) or launch(run)
    )
    return dataclasses.replace(tiny, table=name), launched


def test_a_staged_run_trains_records_and_resumes_stage_by_stage(tiny, monkeypatch, capsys):
    options, launched = _table_with_launches(tiny, monkeypatch, "_staged", staged_table)
    record_path = os.path.join(
        options.results_root, "results", "algorithmic", "tiny-staged-seed0", "metrics.json"
    )
    # The dry run shows the first stage, and counts all three steps in the time left.
    (run,) = reproduce.table_runs(options)
    assert (run.status, run.next_budget, run.budget) == ("to do", 1, 3)
    # --hours that fit one stage (100 s a step here) with 5 s to spare: the first stage is
    # trained, recorded and collected; the second does not fit in what is then left.
    monkeypatch.setattr(reproduce.results, "load_records", lambda root: [])

    def estimate(run, records, whole=False):
        target = run.budget if whole else run.next_budget
        return 100.0 * (target - run.steps_done), True

    monkeypatch.setattr(reproduce, "estimate", estimate)
    assert reproduce.run(dataclasses.replace(options, hours=105 / 3600)) == []
    assert launched == [1]
    with open(record_path) as f:
        assert json.load(f)["train_steps"] == 1
    (run,) = reproduce.table_runs(options)
    assert (run.status, run.recorded, run.steps_done, run.next_budget) == ("partial", 1, 1, 2)
    capsys.readouterr()
    reproduce.run(dataclasses.replace(options, dry_run=True))
    lines = capsys.readouterr().out.splitlines()
    assert "stage 1 recorded" in lines[1] and "2 of 3" in lines[1]
    assert lines[2] == "1 runs, 0 done; estimated time left: 3 min"  # 2 steps at 100 s
    # Without a limit the rest goes on: stage 2, then the whole budget, each collected.
    assert reproduce.run(options) == []
    assert launched == [1, 2, 3]
    with open(record_path) as f:
        record = json.load(f)
    assert record["train_steps"] == 3 and len(record["invocations"]) == 3
    (run,) = reproduce.table_runs(options)
    assert run.status == "done"
    assert reproduce.run(options) == [] and launched == [1, 2, 3]


def test_breadth_first_takes_every_run_to_its_next_stage_first(tiny, monkeypatch):
    def two_staged(options):
        (spec,) = staged_table(options)  # stages 1 and 2 of 3 steps
        return [spec._replace(name=f"tiny-staged-seed{s}") for s in (0, 1)]

    # A launch trains the run to its next stage; its record is then to collect.
    trained, collected, launched = {}, {}, []

    def plan_run(spec, options):
        config = reproduce.script_config(spec, options.runs_dir)
        run = reproduce.Run(spec, config, reproduce.SCRIPTS[spec.script_module], spec.name, "")
        run.steps_done = trained.get(spec.name, 0)
        if run.steps_done > collected.get(spec.name, 0):
            run.status = "finished"
        else:
            run.status = "done" if run.steps_done == 3 else "partial"
        return run

    def launch(run):
        launched.append((int(run.spec.name[-1]), run.next_budget))
        trained[run.spec.name] = run.next_budget
        return 0

    monkeypatch.setitem(reproduce.TABLES, "_two_staged", two_staged)
    monkeypatch.setattr(reproduce, "plan_run", plan_run)
    monkeypatch.setattr(reproduce, "launch", launch)
    monkeypatch.setattr(
        reproduce.results,
        "collect",
        lambda model_dir, _: collected.update({model_dir: trained[model_dir]}),
    )
    monkeypatch.setattr(reproduce, "keep_resume_state", lambda run: None)
    monkeypatch.setattr(reproduce.results, "render", lambda root: [])
    for breadth_first, order in (
        (True, [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]),
        (False, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]),
    ):
        trained.clear()
        collected.clear()
        launched.clear()
        options = dataclasses.replace(tiny, table="_two_staged", breadth_first=breadth_first)
        assert reproduce.run(options) == []
        assert launched == order, breadth_first


def diverging_table(options):
    """MNM-g with the paper's writes, keys of 64 and learning rate 1 (as in
    test_algorithmic_example): finite for its first stage, then non-finite at a later step."""
    sizes = dict(units=8, memory_units=64, key_size=64, memory_layers=1, batch_size=4)
    config = dict(
        task="dictionary",
        model="mnm_g",
        steps_per_epoch=1,
        eval_episodes=8,
        learning_rate=1.0,
        normalize_writes=False,
        train_steps=8,
        seed=0,
        **sizes,
    )
    return [reproduce.RunSpec("tiny-diverging-seed0", "examples.algorithmic", config, (1,))]


def test_a_run_that_diverges_is_recorded_as_such_and_ends(tiny, monkeypatch, capsys):
    options, launched = _table_with_launches(tiny, monkeypatch, "_diverging", diverging_table)
    # Its first stage is recorded; the next diverges: not a failure of the table, its
    # record (no results, the step and the quantity) is collected and ends the run.
    assert reproduce.run(options) == []
    assert launched == [1, 8]
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "training diverged at step" in line]
    path = os.path.join(options.results_root, "results", "algorithmic", "tiny-diverging-seed0")
    with open(os.path.join(path, "metrics.json")) as f:
        record = json.load(f)
    step = record["diverged"]["step"]
    assert 2 <= step < 8 and record["train_steps"] == step and record["results"] == {}
    assert f"at step {step}; its record says so" in line
    # It is not trained again: no state is kept beside its record.
    assert os.listdir(path) == ["metrics.json"]
    (run,) = reproduce.table_runs(options)
    assert (run.status, run.diverged, run.steps_done) == ("done", step, step)
    # Done: a rerun launches nothing, the dry run says why, the tables count the seed.
    assert reproduce.run(options) == [] and launched == [1, 8]
    capsys.readouterr()
    reproduce.run(dataclasses.replace(options, dry_run=True))
    assert f"done (diverged at step {step})" in capsys.readouterr().out
    with open(os.path.join(options.results_root, "docs", "tables.md")) as f:
        assert "| 0/1 |" in f.read()
    # With a larger budget, the same seed diverges again at the same step: still done.
    bigger = diverging_table(options)[0]
    bigger = bigger._replace(overrides={**bigger.overrides, "train_steps": 20})
    run = reproduce.plan_run(bigger, options)
    assert (run.status, run.diverged) == ("done", step)
    # Another config (not only the budget) is not this record's run.
    other = bigger._replace(overrides={**bigger.overrides, "learning_rate": 0.5})
    assert reproduce.plan_run(other, options).status == "conflict"


def early_stopping_table(options):
    """A tiny bAbI LSTM whose validation error cannot improve (learning rate 1e-9): with
    patience 1 and an evaluation every step, early stopping ends it at step 2, inside the
    stage after its first (stages 1 and 4 of 6 steps)."""
    config = dict(
        data_dir=SHARED,
        version="en",
        tasks=(1,),
        model="lstm",
        units=8,
        batch_size=8,
        test_stories_per_task=10,
        steps_per_epoch=1,
        patience=1,
        learning_rate=1e-9,
        train_steps=6,
        seed=0,
    )
    return [reproduce.RunSpec("tiny-stopping-seed0", "examples.babi", config, (1, 4))]


@needs_release
def test_a_run_that_early_stopping_ends_is_recorded_and_ends(tiny, monkeypatch, capsys):
    options, launched = _table_with_launches(tiny, monkeypatch, "_stopping", early_stopping_table)
    # Stage 1 is recorded; in the next, early stopping ends training at step 2, below the
    # stage: that record is the run's, collected, and nothing is launched after it.
    assert reproduce.run(options) == []
    assert launched == [1, 4]
    assert "early stopping ended training at step 2; its record" in capsys.readouterr().out
    path = os.path.join(options.results_root, "results", "babi", "tiny-stopping-seed0")
    with open(os.path.join(path, "metrics.json")) as f:
        record = json.load(f)
    assert record["stopped_early"] == {"step": 2} and record["train_steps"] == 2
    assert record["config"]["train_steps"] == 4 and len(record["results"]["task_errors"]) == 20
    assert os.listdir(path) == ["metrics.json"]  # no state kept: it is not trained again
    (run,) = reproduce.table_runs(options)
    assert (run.status, run.stopped_early, run.steps_done) == ("done", 2, 2)
    assert reproduce.run(options) == [] and launched == [1, 4]
    capsys.readouterr()
    reproduce.run(dataclasses.replace(options, dry_run=True))
    assert "done (stopped early at step 2)" in capsys.readouterr().out
    (loaded,) = results.load_records(options.results_root)
    assert loaded.stopped_early == {"step": 2}
    assert "| 2 (stopped early) |" in results.babi_table([loaded])
    # Another config (not only the budget) is not this record's run.
    spec = early_stopping_table(options)[0]
    other = spec._replace(overrides={**spec.overrides, "units": 9})
    assert reproduce.plan_run(other, options).status == "conflict"


@pytest.mark.parametrize("stages", [(2, 1), (0, 1), (3,), (1, 1)])
def test_stages_must_increase_below_the_budget(tiny, monkeypatch, stages):
    spec = reproduce.RunSpec("x", "examples.algorithmic", {**TINY, "train_steps": 3}, stages)
    with pytest.raises(ValueError, match=r"`stages` of the run 'x' must be increasing"):
        reproduce.plan_run(spec, tiny)


def test_maze_stages_end_at_checkpoints_and_resume_to_the_whole_budget():
    options = reproduce.Config(table="maze")
    for spec in reproduce.maze_table(options):
        reproduce.check_stages(spec)
        interval = spec.overrides["eval_interval"]
        assert spec.stages and all(stage % interval == 0 for stage in spec.stages), spec.name
        assert spec.overrides["num_episodes"] == reproduce.MAZE_EPISODES


def test_a_run_stopped_after_reaching_its_budget_is_invoked_again_for_its_record(
    tiny, monkeypatch, capsys
):
    """A process killed at its deadline after its training reached the budget, before it
    wrote its record, is invoked once more (from its checkpoint) and its record collected."""
    launched = []
    launch = reproduce.launch

    def stopped_before_the_record(run):
        launched.append((run.spec.name, run.deadline))
        status = launch(run)
        if len(launched) == 1:  # trained to the budget, then killed before its record
            os.remove(os.path.join(run.model_dir, "metrics.json"))
            return None
        return status

    monkeypatch.setattr(reproduce, "launch", stopped_before_the_record)
    assert reproduce.run(tiny) == []
    assert [name for name, _ in launched] == [
        "tiny-lstm-seed0",
        "tiny-lstm-seed0",
        "tiny-lstm-seed1",
    ]
    assert launched[1][1] == reproduce.FINISH_SECONDS
    out = capsys.readouterr().out
    assert "tiny-lstm-seed0: trained to 2 but stopped at its deadline before writing" in out
    assert "[reproduce] tiny-lstm-seed0: collected" in out
    path = os.path.join(tiny.results_root, "results", "algorithmic", "tiny-lstm-seed0")
    with open(os.path.join(path, "metrics.json")) as f:
        assert json.load(f)["train_steps"] == 2


def test_a_staged_run_resumes_on_another_machine_from_its_committed_archive(
    tiny, monkeypatch, capsys, tmp_path
):
    """A stage's record is committed with the run's state (``resume.tar.gz``), so that a
    clone without the runs directory resumes from the stage instead of from the start."""
    monkeypatch.setitem(reproduce.TABLES, "_staged", staged_table)
    options = dataclasses.replace(tiny, table="_staged")
    destination = os.path.join(options.results_root, "results", "algorithmic", "tiny-staged-seed0")
    archive = os.path.join(destination, reproduce.RESUME_ARCHIVE)
    launched = []
    launch = reproduce.launch
    monkeypatch.setattr(
        reproduce, "launch", lambda run: launched.append(run.next_budget) or launch(run)
    )
    # The first stage, then a stop: its record and its state are beside each other.
    monkeypatch.setattr(reproduce.results, "load_records", lambda root: [])
    monkeypatch.setattr(reproduce, "estimate", lambda run, records, whole=False: (100.0, True))
    assert reproduce.run(dataclasses.replace(options, hours=105 / 3600)) == []
    assert launched == [1] and os.path.exists(archive)
    packed = open(archive, "rb").read()
    # The same state packs to the same bytes; the archive names no path of the machine.
    model_dir = os.path.join(options.runs_dir, "tiny-staged-seed0")
    reproduce.pack_resume(
        model_dir, archive, reproduce.SCRIPTS["examples.algorithmic"].resume_files
    )
    assert open(archive, "rb").read() == packed
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        invocations = json.load(tar.extractfile("invocations.json"))
    assert "backup/latest.weights.h5" in names and "history.jsonl" in names
    assert "metrics.json" not in names
    assert invocations[0]["config"]["model_dir"] == "<runs_dir>/tiny-staged-seed0"
    # Another machine: the clone has the committed files only.
    moved = dataclasses.replace(options, runs_dir=str(tmp_path / "other_runs"))
    (run,) = reproduce.table_runs(moved)
    assert (run.status, run.steps_done, run.next_budget) == ("partial", 1, 2)
    assert run.resume_archive == archive
    capsys.readouterr()
    assert reproduce.run(moved) == []
    out = capsys.readouterr().out
    assert "tiny-staged-seed0: resuming at 1 from" in out
    assert launched == [1, 2, 3]  # no step trained twice
    with open(os.path.join(destination, "metrics.json")) as f:
        record = json.load(f)
    assert record["train_steps"] == 3
    assert [i["start_step"] for i in record["invocations"]] == [0, 1, 2]
    # The whole budget recorded: the archive is gone.
    assert not os.path.exists(archive)


def test_an_archive_that_does_not_hold_the_recorded_stage_is_refused(tiny, monkeypatch, tmp_path):
    monkeypatch.setitem(reproduce.TABLES, "_staged", staged_table)
    options = dataclasses.replace(tiny, table="_staged")
    monkeypatch.setattr(reproduce.results, "load_records", lambda root: [])
    monkeypatch.setattr(reproduce, "estimate", lambda run, records, whole=False: (100.0, True))
    assert reproduce.run(dataclasses.replace(options, hours=105 / 3600)) == []
    (run,) = reproduce.table_runs(dataclasses.replace(options, runs_dir=str(tmp_path / "x")))
    empty = tmp_path / "empty"
    empty.mkdir()
    reproduce.pack_resume(str(empty), run.resume_archive, ("history.jsonl",))
    # Planned from the archive's history: none, so 0 steps, below the recorded stage.
    (run,) = reproduce.table_runs(dataclasses.replace(options, runs_dir=str(tmp_path / "x")))
    assert run.steps_done == 0
    with pytest.raises(RuntimeError, match="trained to 0 steps, not from the committed record's 1"):
        reproduce.prepare(run)


def test_a_checkpoint_directory_is_packed_with_its_latest_checkpoint_only(tmp_path):
    import tensorflow as tf

    step = tf.Variable(0)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(step=step), str(tmp_path / "run" / "checkpoints"), max_to_keep=2
    )
    for value in (1, 2):
        step.assign(value)
        manager.save()
    (tmp_path / "run" / "rewards.csv").write_text("episode,reward\n")
    archive = str(tmp_path / "resume.tar.gz")
    reproduce.pack_resume(str(tmp_path / "run"), archive, ("checkpoints", "rewards.csv", "gone"))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert all("ckpt-1." not in name for name in names)
    assert "checkpoints/ckpt-2.index" in names and "rewards.csv" in names
    reproduce.unpack_resume(archive, str(tmp_path / "clone"))
    restored = tf.Variable(0)
    path = tf.train.latest_checkpoint(str(tmp_path / "clone" / "checkpoints"))
    tf.train.Checkpoint(step=restored).restore(path).assert_consumed()
    assert int(restored.numpy()) == 2
