"""examples.results: the docs' tables and figures agree with the committed run records."""

import json
import os

import pytest

from examples import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_docs_are_rendered_from_the_committed_records():
    assert results.stale(ROOT) == [], "run: python -m examples.results render"


def test_every_committed_record_is_complete():
    for record in results.load_records(ROOT):
        if record.diverged:  # stopped at its step: the finite epochs before it, no results
            assert record.train_steps == record.diverged["step"], record.path
            assert results.last_step(record.history) < record.train_steps, record.path
            assert record.results == {} and record.diverged["message"], record.path
        else:
            assert record.history, record.path
            assert record.train_steps == record.history[-1]["step"], record.path
        with open(os.path.join(ROOT, record.path)) as f:
            data = json.load(f)
        assert data["invocations"] and data["commit"] and data["hardware"], record.path
        assert data["invocations"][-1]["wall_seconds"] is not None, record.path


def test_no_committed_record_names_a_path_of_the_machine_that_trained_it():
    for record in results.load_records(ROOT):
        with open(os.path.join(ROOT, record.path)) as f:
            data = json.load(f)
        configs = [data["config"], *(i.get("config", {}) for i in data["invocations"])]
        for config in configs:
            assert not os.path.isabs(config.get("model_dir") or ""), record.path
        for invocation in data["invocations"]:
            assert not any(a.startswith("--model_dir=/") for a in invocation["argv"]), record.path


def _write(root, run, model, seed, error, normalize=False, steps=2000, protocol=None):
    history = [
        {"epoch": 0, "step": steps // 2, "epoch_seconds": 1.0, "val_sequence_error": 0.5},
        {"epoch": 1, "step": steps, "epoch_seconds": 1.0, "val_sequence_error": error},
    ]
    record = {
        "task": "algorithmic",
        "config": {
            "task": "dictionary",
            "support_size": 4,
            "sequence_length": 1,
            "model": model,
            "seed": seed,
            "normalize_writes": normalize,
        },
        "results": {"eval_sequence_error": error, "eval_symbol_error": error / 2},
        "train_steps": steps,
        "wall_seconds": 2.0,
        "history": history,
        "protocol": results.PROTOCOL if protocol is None else protocol,
    }
    if protocol == 1:
        del record["protocol"]  # records of protocol 1 have no such field
    path = os.path.join(root, "results", "algorithmic", run)
    os.makedirs(path)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(record, f)


def test_tables_give_mean_spread_and_solved_seeds(tmp_path):
    _write(tmp_path, "p0", "mnm_p", 0, 0.0)
    _write(tmp_path, "p1", "mnm_p", 1, 0.2)
    _write(tmp_path, "p2", "mnm_p", 2, 0.4)
    _write(tmp_path, "g0", "mnm_g", 0, 0.0, normalize=True)
    _write(tmp_path, "short", "mnm_g", 0, 0.9, normalize=True, steps=10)
    doc = tmp_path / "docs" / "design.md"
    doc.parent.mkdir()
    doc.write_text(
        "x\n<!-- results table: normalize_writes -->\nold\n<!-- end of results table -->\n"
    )
    assert results.stale(str(tmp_path)) == [
        str(doc),
        str(tmp_path / "docs/figures/dictionary_4_1_normalize_writes.png"),
        str(tmp_path / "docs/figures/dictionary_learning_curves.png"),
    ]
    results.render(str(tmp_path))
    text = doc.read_text()
    assert "old" not in text
    rows = [line for line in text.splitlines() if line.startswith("| dictionary")]
    # MNM-p first (model order), then MNM-g; the 10-step run is not in this table.
    assert len(rows) == 2
    assert "| MNM-p | paper | 2,000 | 3 | 0.200 ± 0.200 | 0.100 ± 0.100 | 1/3 |" in rows[0]
    assert "| MNM-g | normalised | 2,000 | 1 | 0.000 | 0.000 | 1/1 |" in rows[1]
    figure = json.loads(
        (tmp_path / "docs/figures/dictionary_4_1_normalize_writes.json").read_text()
    )
    assert figure["curves"]["MNM-p, paper writes"] == {"x": [1000, 2000], "y": [0.5, 0.2]}
    assert (tmp_path / "docs/figures/dictionary_4_1_normalize_writes.png").stat().st_size > 1000
    assert results.stale(str(tmp_path)) == []
    # A record changed after rendering makes the docs stale.
    _write(tmp_path, "p3", "mnm_p", 3, 1.0)
    assert str(doc) in results.stale(str(tmp_path))


def test_the_writes_comparison_keeps_each_stage_of_the_dictionary_runs_apart(tmp_path):
    # Seeds of a staged run at different stages: one row and one curve per budget.
    _write(tmp_path, "p0", "mnm_p", 0, 0.4)
    _write(tmp_path, "p1", "mnm_p", 1, 0.0, steps=10000)
    _write(tmp_path, "p2", "mnm_p", 2, 0.2, steps=10000)
    _write(tmp_path, "short", "mnm_p", 3, 0.9, steps=1000)
    records = results.load_records(str(tmp_path))
    rows = [
        line
        for line in results.normalize_writes_table(records).splitlines()
        if line.startswith("| dictionary")
    ]
    assert len(rows) == 2
    assert "| MNM-p | paper | 2,000 | 1 | 0.400 |" in rows[0]
    assert "| MNM-p | paper | 10,000 | 2 | 0.100 ± 0.141 |" in rows[1]
    figure = results.normalize_writes_figure(records)
    assert figure["curves"] == {
        "MNM-p, paper writes, 2,000 steps": {"x": [1000, 2000], "y": [0.5, 0.4]},
        "MNM-p, paper writes, 10,000 steps": {"x": [5000, 10000], "y": [0.5, 0.1]},
    }


def test_records_of_an_old_protocol_are_marked_and_kept_apart(tmp_path):
    _write(tmp_path, "new0", "mnm_p", 0, 0.0)
    _write(tmp_path, "new1", "mnm_p", 1, 0.2)
    _write(tmp_path, "old0", "mnm_p", 0, 0.9, protocol=1)
    records = results.load_records(str(tmp_path))
    assert [r.old for r in records] == [False, False, True]
    rows = [
        line for line in results.algorithmic_table(records).splitlines() if line.startswith("|")
    ]
    # Header, rule, then the current protocol's row before the old one: never averaged.
    assert "| MNM-p | paper | 2,000 | 2 | 0.100 ± 0.141 |" in rows[2]
    assert f"| MNM-p {results.OLD_MARK} | paper | 2,000 | 1 | 0.900 |" in rows[3]
    table = results.algorithmic_table(records)
    assert f"{results.OLD_MARK} Recorded under training protocol 1" in table
    summary = results.summary_table(records)
    assert f"MNM-p, paper writes {results.OLD_MARK} |" in summary
    assert "Recorded under training protocol 1" in summary
    # Without old records, no mark and no note.
    current = [r for r in records if not r.old]
    assert results.OLD_MARK not in results.algorithmic_table(current)
    assert results.OLD_MARK not in results.summary_table(current)


def test_a_table_without_records_says_so_and_unknown_names_are_refused(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text("<!-- results table: babi -->\n<!-- end of results table -->\n")
    results.render(str(tmp_path))
    assert results.NO_RECORD in doc.read_text()
    doc.write_text("<!-- results table: nonsense -->\n<!-- end of results table -->\n")
    with pytest.raises(ValueError, match="unknown results table 'nonsense'"):
        results.render(str(tmp_path))


def test_two_records_of_the_same_run_are_refused(tmp_path):
    _write(tmp_path, "p0", "mnm_p", 0, 0.0)
    _write(tmp_path, "p0-again", "mnm_p", 0, 0.1)
    with pytest.raises(ValueError, match="p0.*p0-again.*same run"):
        results.load_records(str(tmp_path))
    # Another seed, budget or writes is another run.
    _write(tmp_path.joinpath("ok"), "a", "mnm_p", 0, 0.0)
    _write(tmp_path.joinpath("ok"), "b", "mnm_p", 1, 0.0)
    _write(tmp_path.joinpath("ok"), "c", "mnm_p", 0, 0.0, steps=10)
    _write(tmp_path.joinpath("ok"), "d", "mnm_p", 0, 0.0, normalize=True)
    assert len(results.load_records(str(tmp_path / "ok"))) == 4


def test_collect_copies_only_the_record_and_incomplete_records_are_refused(tmp_path):
    run = tmp_path / "runs" / "a"
    (run / "backup").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"task": "maze", "config": {}}))
    (run / "backup" / "latest.weights.h5").write_text("weights")
    results.collect(str(run), str(tmp_path / "results" / "maze" / "a"))
    assert os.listdir(tmp_path / "results" / "maze" / "a") == ["metrics.json"]
    with pytest.raises(ValueError, match="has no 'results'"):
        results.load_records(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="run_dir"):
        results.collect(str(tmp_path / "runs" / "missing"), str(tmp_path / "x"))


def test_collect_writes_an_absolute_run_dir_as_a_name_under_the_runs_dir(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    record = {
        "config": {"model_dir": str(run)},
        "invocations": [{"argv": [f"--model_dir={run}"], "log": f"{run}/checkpoints"}],
        "other": f"{run}b",  # another run whose name starts with this one's
    }
    (run / "metrics.json").write_text(json.dumps(record))
    results.collect(str(run), str(tmp_path / "results" / "maze" / "a"))
    collected = json.loads((tmp_path / "results" / "maze" / "a" / "metrics.json").read_text())
    assert collected == {
        "config": {"model_dir": "<runs_dir>/a"},
        "invocations": [{"argv": ["--model_dir=<runs_dir>/a"], "log": "<runs_dir>/a/checkpoints"}],
        "other": f"{run}b",
    }
    # A relative run_dir is no path of the machine: the record keeps it.
    assert results.portable_text('"runs/a"', "runs/a") == '"runs/a"'


def _write_record(root, task, run, config, values, steps, diverged=None):
    record = {
        "task": task,
        "config": config,
        "results": values,
        "train_steps": steps,
        "wall_seconds": 3.0,
        "history": [{"epoch": 0, "step": steps, "epoch_seconds": 3.0}],
        "protocol": results.PROTOCOL,
    }
    if diverged is not None:  # `RunRecorder.diverged`: no results, the step it stopped at
        record.update(results={}, train_steps=diverged, history=[], wall_seconds=0.0)
        record["diverged"] = {"step": diverged, "quantity": "loss", "message": "non-finite"}
    path = os.path.join(root, "results", task, run)
    os.makedirs(path)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(record, f)


def test_summary_covers_every_task_beside_the_paper(tmp_path):
    mnm = {"model": "mnm_p", "memory_layers": 1, "memory_units": 100, "normalize_writes": True}
    for seed, reward in ((0, 10.0), (1, 20.0)):
        _write_record(
            tmp_path,
            "maze",
            f"m{seed}",
            {**mnm, "seed": seed},
            {
                "eval_greedy_reward": reward,
                "eval_sampling_reward": reward / 2,
                "train_reward_last_1000": 1.0,
                "random_policy_reward": 9.0,
            },
            4000,
        )
    babi = {"task_errors": [2.5] + [None] * 19, "mean_error": 2.5, "failed_tasks": []}
    _write_record(tmp_path, "babi", "b", {"model": "lstm", "tasks": [1], "seed": 0}, babi, 100)
    recall = {"eval_error": 0.25, "eval_accuracy": 0.75, "chance_error": 0.875}
    _write_record(tmp_path, "associative_recall", "a", {"model": "lstm", "seed": 0}, recall, 1200)
    records = results.load_records(str(tmp_path))
    summary = results.summary_table(records)
    assert "| maze | MNM-p about 175" in summary
    assert (
        "| MNM-p 1 x 100, normalised writes | greedy reward on held-out mazes | 15.0 ± 7.1 | 2 | - | 4,000 episodes, 16 per update |"
        in summary
    )
    assert (
        "| bAbI task 1 | 0 % error for MNM-p, 0 % for MNM-g (best joint run, table 3)" in summary
        and "| mean answer error % | 2.5 | 1 | 1/1 |" in summary
    )
    assert "| associative recall | not in the paper" in summary
    maze = results.maze_table(records)
    assert (
        "| 15.0 ± 7.1 | 15.0 [12.5, 17.5] | 7.5 ± 3.5 | 7.5 [6.2, 8.8] | 1.0 ± 0.0 | 9.0 ± 0.0 |"
        in maze
    )
    # The paper's figure 6 beside it: MNM and the plastic networks, about 175.
    assert "| paper: MNM (figure 6, 10 runs) | 1 | - | 250,000 | 10 |" in maze
    assert "| paper: plastic networks (Miconi et al., figure 6) |" in maze
    assert maze.count("| about 175 | 9.3 | - |") == 2
    assert "| 1: 2.5 |" in results.babi_table(records)
    assert results._tasks_text(list(range(1, 21))) == results._tasks_text(None) == "1-20"
    assert results._tasks_text([1, 2, 3]) == "1,2,3"
    assert "| LSTM | 1,200 | 1 | 0.250 | 0.875 | 3 |" in results.associative_recall_table(records)


def _maze_record(root, run, model, batch, seed, rewards, seconds, rate=None):
    history = [
        {"epoch": i, "step": 400 * (i + 1), "epoch_seconds": seconds, "train_reward": reward}
        for i, reward in enumerate(rewards)
    ]
    config = {"model": model, "memory_layers": 1, "memory_units": 100, "normalize_writes": True}
    config.update(batch_size=batch, learning_rate=rate or 1e-4 * batch, seed=seed)
    values = {
        "eval_greedy_reward": 1.0,
        "eval_sampling_reward": rewards[-1] / 2,
        "train_reward_last_1000": rewards[-1],
        "random_policy_reward": 9.3,
    }
    record = {
        "task": "maze",
        "config": config,
        "results": values,
        "train_steps": history[-1]["step"],
        "wall_seconds": seconds * len(rewards),
        "history": history,
        "protocol": results.PROTOCOL,
    }
    path = os.path.join(root, "results", "maze", run)
    os.makedirs(path)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(record, f)


def test_the_maze_regime_table_keeps_settings_apart_with_curves(tmp_path):
    for seed in (0, 1):
        _maze_record(tmp_path, f"maze-regime-lstm-b1-seed{seed}", "lstm", 1, seed, [9, 20], 10)
        _maze_record(tmp_path, f"maze-regime-lstm-b16-seed{seed}", "lstm", 16, seed, [9, 12], 2)
    _maze_record(tmp_path, "maze-lstm-800-seed0", "lstm", 16, 0, [9, 9], 2, rate=1e-4)
    doc = tmp_path / "docs" / "tasks" / "maze.md"
    doc.parent.mkdir(parents=True)
    doc.write_text(
        "<!-- results table: maze_regime -->\n<!-- end of results table -->\n"
        "<!-- results table: maze -->\n<!-- end of results table -->\n"
    )
    results.render(str(tmp_path))
    text = doc.read_text()
    regime, maze = text.split("<!-- results table: maze -->")
    # One row per episodes-per-update setting, never averaged together; the other maze
    # table has only the run outside the regime.
    assert "| LSTM | 1 | 0.0001 | 800 | 2 | 20.0 ± 0.0 | 10.0 ± 0.0 |" in regime
    assert "| LSTM | 16 | 0.0016 | 800 | 2 | 12.0 ± 0.0 | 6.0 ± 0.0 |" in regime
    assert "| 20 | 40.0 |" in regime and "| 4 | 200.0 |" in regime  # seconds, episodes/s
    assert "maze-regime" not in maze and "| LSTM | 16 | 0.0001 | 800 | 1 |" in maze
    figures = tmp_path / "docs" / "figures"
    episodes = json.loads((figures / "maze_regime_episodes.json").read_text())
    assert episodes["curves"]["LSTM, 1 per update, lr 0.0001"] == {"x": [400, 800], "y": [9, 20]}
    seconds = json.loads((figures / "maze_regime_seconds.json").read_text())
    assert seconds["curves"]["LSTM, 16 per update, lr 0.0016"]["x"] == [2.0, 4.0]
    assert (figures / "maze_regime_seconds.png").stat().st_size > 1000
    assert "![training reward against episodes](../figures/maze_regime_episodes.png)" in regime
    assert results.stale(str(tmp_path)) == []
    # The README's summary has the maze table's run only: the regime study is on its page.
    rows = results.summary_table(results.load_records(str(tmp_path))).splitlines()[2:]
    assert [row.split(" | ")[-2] for row in rows] == ["800 episodes, 16 per update"]


def test_the_maze_learning_curves_are_every_runs_held_out_evaluations(tmp_path):
    # One curve per seed from each record's history rows with an evaluation, in the
    # order of the settings; the random policy's mean as a flat line; regime runs and
    # rows without an evaluation left out.
    for seed, greedy in ((0, [5.0, 50.0, 150.0]), (1, [8.0, 20.0])):
        _maze_record(
            tmp_path, f"maze-mnm_p-1x100-100000-seed{seed}", "mnm_p", 16, seed, [9] * len(greedy), 2
        )
        path = (
            tmp_path / "results" / "maze" / f"maze-mnm_p-1x100-100000-seed{seed}" / "metrics.json"
        )
        record = json.loads(path.read_text())
        for row, value in zip(record["history"], greedy):
            row["eval_greedy_reward"] = value
        record["results"]["random_policy_reward"] = 9.0 + seed
        path.write_text(json.dumps(record))
    _maze_record(tmp_path, "maze-lstm-800-seed0", "lstm", 16, 0, [9, 9], 2)  # no evaluations
    _maze_record(tmp_path, "maze-regime-lstm-b1-seed0", "lstm", 1, 0, [9, 20], 10)
    figure = results.maze_learning_curves_figure(results.load_records(str(tmp_path)))
    model = "MNM-p 1 x 100, normalised writes"
    assert figure["curves"] == {
        f"{model}, seed 0": {"x": [400, 800, 1200], "y": [5, 50, 150], "panel": model},
        f"{model}, seed 1": {"x": [400, 800], "y": [8, 20], "panel": model},
        "random policy": {"x": [0, 1200], "y": [9.5, 9.5], "panel": None},
    }
    assert figure["panels"] == [model]
    assert len(figure["sources"]) == 2
    # Drawn with one panel per model, the random policy in each.
    results._draw(str(tmp_path / "curves.png"), figure)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert results.maze_learning_curves_figure([])["curves"] == {}


def test_the_babi_tasks_table_gives_each_task_and_model_beside_the_paper(tmp_path):
    def babi(run, model, task, seed, error, stopped_early=False):
        errors = [None] * 20
        errors[task - 1] = error
        values = {"task_errors": errors, "mean_error": error, "failed_tasks": []}
        if error > 5:
            values["failed_tasks"] = [task]
        config = {"model": model, "tasks": [task], "seed": seed, "train_steps": 2000}
        if model.startswith("mnm"):
            config["normalize_writes"] = True
        _write_record(tmp_path, "babi", run, config, values, 2000)
        if stopped_early:  # `RunRecorder.finish(stopped_early=True)`
            path = os.path.join(tmp_path, "results", "babi", run, "metrics.json")
            with open(path) as f:
                record = json.load(f)
            record["stopped_early"] = {"step": 2000}
            with open(path, "w") as f:
                json.dump(record, f)

    babi("p16-2", "mnm_p", 16, 2, 0.5)
    babi("p16-0", "mnm_p", 16, 0, 5.0)  # passed: 5 % is not more than 5 %
    babi("p16-1", "mnm_p", 16, 1, 50.0, stopped_early=True)
    babi("g16-0", "mnm_g", 16, 0, 52.0)
    babi("l2-0", "lstm", 2, 0, 60.0)
    babi("p2-0", "mnm_p", 2, 0, 0.0)
    config = {"model": "lstm", "tasks": [2], "seed": 1, "train_steps": 2000}
    _write_record(tmp_path, "babi", "l2-1", config, None, None, diverged=30)
    joint = {"task_errors": [1.0] * 20, "mean_error": 1.0, "failed_tasks": []}
    _write_record(tmp_path, "babi", "joint", {"model": "mnm_p", "seed": 0}, joint, 9000)
    records = results.load_records(str(tmp_path))
    table = results.babi_tasks_table(records).splitlines()
    rows = [line for line in table if line.startswith("| 2 ") or line.startswith("| 16 ")]
    # Task 2 before task 16; per task, the models in the paper's order; the joint run is
    # not a single task. The seeds in seed order; passed: an error of 5 % or less; the
    # paper's best joint run on the task for MNM-p (0.1 and 0.7) and MNM-g (51.2).
    assert rows == [
        "| 2 | MNM-p, normalised writes | 2,000 | 1 | 0.0 | 0.0 | 1/1 | 0.1 |",
        "| 2 | LSTM | 2,000 | 2 | 60.0; 1 diverged (step 30) | 60.0 / - | 0/2 | - |",
        "| 16 | MNM-p, normalised writes | 2,000 (1 stopped early) | 3 | 18.5 ± 27.4 | 5.0 / 50.0 / 0.5 | 2/3 | 0.7 |",
        "| 16 | MNM-g, normalised writes | 2,000 | 1 | 52.0 | 52.0 | 0/1 | 51.2 |",
    ]
    summary = results.summary_table(records)
    tasks = [line.split(" | ")[0] for line in summary.splitlines()[2:]]
    assert tasks == ["| bAbI"] + ["| bAbI task 2"] * 2 + ["| bAbI task 16"] * 2
    assert "| bAbI task 16 | 0.7 % error for MNM-p, 51.2 % for MNM-g (best joint run" in summary
    for shape in ("(12, 8)", "(16, 12)"):  # the paper's figure 2 beside the hard instances
        assert results._paper_result(f"dictionary inference {shape}").startswith("only MNM-p")
    assert results._natural("dictionary inference (4, 1)") < results._natural(
        "dictionary inference (12, 8)"
    )


def test_the_babi_learning_curves_have_a_panel_per_task_and_a_style_per_model_and_seed(
    tmp_path,
):
    def babi(run, model, tasks, seed, errors, protocol=results.PROTOCOL):
        history = [
            {"epoch": i, "step": 100 * (i + 1), "epoch_seconds": 1.0, "val_word_error": e}
            for i, e in enumerate(errors)
        ]
        record = {
            "task": "babi",
            "config": {"model": model, "tasks": tasks, "seed": seed},
            "results": {"task_errors": [1.0] * 20, "mean_error": 1.0, "failed_tasks": []},
            "train_steps": 100 * len(errors),
            "wall_seconds": 3.0,
            "history": history,
            "protocol": protocol,
        }
        os.makedirs(tmp_path / "results" / "babi" / run)
        (tmp_path / "results" / "babi" / run / "metrics.json").write_text(json.dumps(record))

    babi("joint", "mnm_p", None, 0, [0.5, 0.4, 0.3])
    babi("l16", "lstm", [16], 1, [0.9, 0.8])
    babi("p1-1", "mnm_p", [1], 1, [0.6, 0.1])
    babi("p1-0", "mnm_p", [1], 0, [0.5, 0.0])
    babi("g1-2", "mnm_g", [1], 2, [0.7, 0.5], protocol=1)
    babi("paper-size", "mnm_p", None, 0, [0.2])  # the same model and seed, another size
    figure = results.babi_learning_curves_figure(results.load_records(str(tmp_path)))
    assert figure["panels"] == ["task 1", "task 16", "tasks 1-20"]
    curves = figure["curves"]
    assert list(curves) == [
        "task 1, MNM-p, seed 0",
        "task 1, MNM-p, seed 1",
        f"task 1, MNM-g {results.OLD_MARK}, seed 2",
        "task 16, LSTM, seed 1",
        "tasks 1-20, MNM-p, seed 0",
        "tasks 1-20, MNM-p, seed 0 (paper-size)",
    ]
    assert curves["task 1, MNM-p, seed 1"] | {"style": None} == {
        "x": [100, 200],
        "y": [0.6, 0.1],
        "panel": "task 1",
        "style": None,
    }
    styles = [(c["style"]["color"], c["style"]["linestyle"]) for c in curves.values()]
    assert styles == [("C0", "-"), ("C0", "--"), ("C1", ":"), ("C3", "--")] + [("C0", "-")] * 2
    assert [c["style"]["alpha"] for c in curves.values()] == [1.0, 1.0, 0.4, 1.0, 1.0, 1.0]
    assert results.babi_learning_curves_figure([])["curves"] == {}


def test_the_dictionary_learning_curves_are_every_normalised_or_baseline_run(tmp_path):
    for run, model, seed, normalize, k in (
        ("l0", "lstm", 0, False, 4),
        ("p1", "mnm_p", 1, True, 4),
        ("p0", "mnm_p", 0, True, 4),
        ("q2", "mnm_p", 2, False, 4),  # the paper's writes: table b's figure
        ("g8", "mnm_g", 2, True, 8),
    ):
        config = {"task": "dictionary", "support_size": k, "sequence_length": k // 2}
        config.update(model=model, seed=seed)
        if model != "lstm":
            config["normalize_writes"] = normalize
        values = {"eval_sequence_error": 0.5, "eval_symbol_error": 0.5}
        _write_record(tmp_path, "algorithmic", run, config, values, 200)
        path = tmp_path / "results" / "algorithmic" / run / "metrics.json"
        record = json.loads(path.read_text())
        record["history"] = [
            {"epoch": 0, "step": 100, "val_sequence_error": 0.9},
            {"epoch": 1, "step": 200, "val_sequence_error": 0.5},
        ]
        path.write_text(json.dumps(record))
    figure = results.dictionary_learning_curves_figure(results.load_records(str(tmp_path)))
    assert figure["panels"] == ["dictionary inference (4, 2)", "dictionary inference (8, 4)"]
    assert list(figure["curves"]) == [
        "dictionary inference (4, 2), MNM-p, seed 0",
        "dictionary inference (4, 2), MNM-p, seed 1",
        "dictionary inference (4, 2), LSTM, seed 0",
        "dictionary inference (8, 4), MNM-g, seed 2",
    ]
    curve = figure["curves"]["dictionary inference (4, 2), LSTM, seed 0"]
    assert (curve["x"], curve["y"], curve["style"]["color"]) == ([100, 200], [0.9, 0.5], "C3")
    assert figure["xscale"] == "log"


def test_a_diverged_run_counts_among_its_settings_seeds(tmp_path):
    dictionary = {"task": "dictionary", "support_size": 4, "sequence_length": 1}
    mnm_g = {**dictionary, "model": "mnm_g", "normalize_writes": False}
    _write(tmp_path, "g0", "mnm_g", 0, 0.7, steps=10000)
    _write(tmp_path, "g1", "mnm_g", 1, 0.5, steps=10000)
    # Seed 2 diverged at step 80 of its first stage (its config: a budget of 2,000).
    config = {**mnm_g, "seed": 2, "train_steps": 2000}
    _write_record(tmp_path, "algorithmic", "g2", config, None, None, diverged=80)
    # Alone in its setting (another model), a diverged run stands at its config's budget.
    config = {**dictionary, "model": "lstm", "seed": 0, "train_steps": 2000}
    _write_record(tmp_path, "algorithmic", "l0", config, None, None, diverged=7)
    babi = {"model": "lstm", "tasks": [1], "seed": 0, "train_steps": 500}
    _write_record(tmp_path, "babi", "b", babi, None, None, diverged=120)
    recall = {"model": "lstm", "seed": 0, "train_steps": 1200}
    _write_record(tmp_path, "associative_recall", "a", recall, None, None, diverged=9)
    records = results.load_records(str(tmp_path))
    steps = [r.diverged["step"] if r.diverged else None for r in records]
    assert steps == [None, None, 80, 7, 9, 120]  # by path: algorithmic, recall, bAbI
    table = results.algorithmic_table(records)
    assert (
        "| dictionary inference (4, 1) | MNM-g | paper | 10,000 | 3 "
        "| 0.600 ± 0.141; 1 diverged (step 80) | 0.300 ± 0.071; 1 diverged (step 80) | 0/3 | 2 |"
    ) in table  # the training time of the runs that reached the budget
    assert "| LSTM | - | 2,000 | 1 | 1 diverged (step 7) | 1 diverged (step 7) | 0/1 | - |" in table
    assert "10,000 | 3 |" in results.normalize_writes_table(records)
    figure = results.normalize_writes_figure(records)
    assert list(figure["curves"]) == ["MNM-g, paper writes"]  # no curve of the diverged run
    summary = results.summary_table(records)
    assert "| 0.600 ± 0.141; 1 diverged (step 80) | 3 | 0/3 | 10,000 steps |" in summary
    assert "| 1 diverged (step 120) | 1 | 0/1 | 500 steps |" in summary
    assert "| LSTM | 1 diverged (step 7) | 1 | 0/1 | 2,000 steps |" in summary.replace(
        "| held-out sequence error ", ""
    )
    assert "| LSTM | 1 | 120 | 0 | diverged at step 120 | - | - |" in results.babi_table(records)
    assert "| LSTM | 1,200 | 1 | 1 diverged (step 9) | - |" in (
        results.associative_recall_table(records)
    )


def test_a_diverged_maze_run_counts_among_its_settings_seeds(tmp_path):
    mnm = {"model": "mnm_p", "memory_layers": 1, "memory_units": 100, "num_episodes": 8000}
    mnm["normalize_writes"] = True
    for seed, reward in ((0, 10.0), (1, 20.0)):
        values = {
            "eval_greedy_reward": reward,
            "eval_sampling_reward": reward / 2,
            "train_reward_last_1000": 1.0,
            "random_policy_reward": 9.0,
        }
        _write_record(tmp_path, "maze", f"m{seed}", {**mnm, "seed": seed}, values, 8000)
    _write_record(tmp_path, "maze", "m2", {**mnm, "seed": 2}, None, None, diverged=3000)
    records = results.load_records(str(tmp_path))
    rows = [line for line in results.maze_table(records).splitlines() if "| 8,000 |" in line]
    assert rows == [
        "| MNM-p 1 x 100, normalised writes | 16 | 0.0001 | 8,000 | 3 "
        "| 15.0 ± 7.1; 1 diverged (step 3,000) | 15.0 [12.5, 17.5]; 1 diverged (step 3,000) "
        "| 7.5 ± 3.5; 1 diverged (step 3,000) | 7.5 [6.2, 8.8]; 1 diverged (step 3,000) "
        "| 1.0 ± 0.0; 1 diverged (step 3,000) | 9.0 ± 0.0; 1 diverged (step 3,000) | 3 |"
    ]
    # Every run's evaluations are curves (the diverged one's up to its step); the random
    # policy's line is that of the runs that measured it.
    for run, reward in (("m0", 10.0), ("m2", 5.0)):
        path = tmp_path / "results" / "maze" / run / "metrics.json"
        record = json.loads(path.read_text())
        record["history"] = [{"epoch": 0, "step": 2000, "eval_greedy_reward": reward}]
        path.write_text(json.dumps(record))
    figure = results.maze_learning_curves_figure(results.load_records(str(tmp_path)))
    assert figure["curves"]["MNM-p 1 x 100, normalised writes, seed 2"]["y"] == [5.0]
    assert figure["curves"]["random policy"]["y"] == [9.0, 9.0]


def test_compare_sets_each_rerun_beside_its_committed_cell(tmp_path, capsys):
    committed, rerun = tmp_path / "repo", tmp_path / "rerun"
    lstm = {"task": "dictionary", "support_size": 4, "sequence_length": 1, "model": "lstm"}

    def dictionary(root, run, seed, error, steps=2000, diverged=None, **fields):
        values = {"eval_sequence_error": error, "eval_symbol_error": error}
        config = {**lstm, **fields, "seed": seed, "model_dir": f"/somewhere/{run}"}
        _write_record(root, "algorithmic", run, config, values, steps, diverged)

    for seed, error in enumerate((0.10, 0.20, 0.30)):  # mean 0.2, std 0.1
        dictionary(committed, f"l{seed}", seed, error)
    dictionary(committed, "p0", 0, 0.5, units=8)
    dictionary(committed, "p1", 1, None, units=8, diverged=40)
    dictionary(rerun, "l0", 0, 0.10)  # the same as committed
    dictionary(rerun, "l1", 1, 0.39)  # 0.19 from the mean, within 2 std = 0.2
    dictionary(rerun, "l2", 2, 0.41)  # outside
    dictionary(rerun, "l3", 3, 0.2, steps=4000)  # no committed record at these steps
    dictionary(rerun, "p1", 1, None, units=8, diverged=40)  # as a committed seed did
    dictionary(rerun, "p2", 2, 0.509, units=8)  # one seed: within the floor (0.01)
    rows, outside = results.compare(str(committed), str(rerun))
    verdicts = {row[0]: (row[5], row[6], row[7]) for row in rows}
    assert verdicts["l0"] == ("0.100", "0.200 ± 0.100 (3 seeds)", "yes (bound 0.200)")
    assert verdicts["l1"][2] == "yes (bound 0.200)"
    assert verdicts["l2"] == ("0.300", "0.200 ± 0.100 (3 seeds)", "no (bound 0.200)")
    assert verdicts["l3"] == ("-", "no committed record", "no")
    assert verdicts["p1"] == ("diverged", "0.500 ± 0.000 (1 seed), 1 diverged", "yes")
    assert verdicts["p2"] == ("-", "0.500 ± 0.000 (1 seed), 1 diverged", "yes (bound 0.010)")
    assert outside == ["l2", "l3"]
    # A tighter bound; the command exits 1 naming what is outside, 0 when nothing is.
    assert results.compare(str(committed), str(rerun), sigmas=1.0)[1] == ["l1", "l2", "l3"]
    assert results.main(["--root", str(committed), "compare", str(rerun)]) == 1
    assert "outside their committed cell: l2, l3" in capsys.readouterr().out
    assert results.main(["--root", str(committed), "compare", str(committed)]) == 0
    assert results.main(["--root", str(committed), "compare", str(tmp_path / "none")]) == 1
    with pytest.raises(ValueError, match="`sigmas`.*-1"):
        results.compare(str(committed), str(rerun), sigmas=-1)


def test_the_babi_runs_table_lists_joint_runs_then_tasks_in_order_then_models_and_seeds(
    tmp_path,
):
    def babi(run, model, tasks, seed):
        errors = [1.0 if not tasks or t in tasks else None for t in range(1, 21)]
        values = {"task_errors": errors, "mean_error": 1.0, "failed_tasks": []}
        config = {"model": model, "tasks": tasks, "seed": seed}
        _write_record(tmp_path, "babi", run, config, values, 100)

    # Run names in an order unlike the table's: task 16 before task 2 as strings.
    babi("a-task16-lstm-seed0", "lstm", [16], 0)
    babi("b-task2-mnm_p-seed1", "mnm_p", [2], 1)
    babi("c-task2-lstm-seed0", "lstm", [2], 0)
    babi("d-task2-mnm_p-seed0", "mnm_p", [2], 0)
    babi("e-joint-mnm_p-seed0", "mnm_p", None, 0)
    lines = results.babi_table(results.load_records(str(tmp_path))).splitlines()[2:]
    cells = [[cell.strip() for cell in line.split("|")[1:5]] for line in lines]
    assert cells == [
        ["MNM-p, paper writes", "1-20", "100", "0"],
        ["MNM-p, paper writes", "2", "100", "0"],
        ["MNM-p, paper writes", "2", "100", "1"],
        ["LSTM", "2", "100", "0"],
        ["LSTM", "16", "100", "0"],
    ]
