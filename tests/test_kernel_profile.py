"""benchmarks/kernel_profile.py: the pieces of a training step add up, and the files appear."""

import json

import pytest
from absl import flags

from benchmarks import kernel_profile as kp
from mnm_keras import kernels


def test_pieces_are_the_differences_of_the_nested_timings():
    seconds = {"forward": 1.0, "forward_backward": 3.5, "layer": 4.0, "train_step": 6.0}
    assert list(kp.pieces(seconds).values()) == [1.0, 2.5, 0.5, 2.0]
    assert sum(kp.pieces(seconds).values()) == seconds["train_step"]
    noisy = {"forward": 1.0, "forward_backward": 0.9, "layer": 4.0, "train_step": 6.0}
    assert kp.pieces(noisy)["recurrence backward"] == 0.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="steps"):
        kp.run(["xla"], [4], 2, 0)
    with pytest.raises(ValueError, match="'kernel' or 'xla'"):
        kp.run(["fast"], [4], 2, 1, units=4, memory_units=4)
    with pytest.raises(ValueError, match="`rules`.*'mnm_x'"):
        kp.run(["xla"], [4], 2, 1, units=4, memory_units=4, rules=["mnm_x"])


def test_main_writes_a_table_json_and_png(tmp_path, capsys):
    implementations = "kernel,xla" if kernels.available() else "xla"
    before = set(flags.FLAGS)
    kp.define_flags()
    try:
        flags.FLAGS(
            [
                "kernel_profile",
                "--lengths=4",
                f"--implementations={implementations}",
                "--batch_size=2",
                "--steps=1",
                "--rules=mnm_p,mnm_g",
                f"--out_dir={tmp_path}",
            ]
        )
        rows = kp.run(
            flags.FLAGS.implementations, [4], 2, 1, units=6, memory_units=5, rules=flags.FLAGS.rules
        )
        kp.plot(rows, tmp_path / "kernel_profile.png")
        print(kp.table(rows))
    finally:
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)
    assert [(r["rule"], r["implementation"]) for r in rows] == [
        (rule, implementation)
        for rule in ("mnm_p", "mnm_g")
        for implementation in implementations.split(",")
    ]
    for row in rows:
        assert set(row["pieces"]) == set(kp.PIECES)
        assert row["seconds"]["lstm"] > 0 and row["ratio_to_lstm"] > 0
        json.dumps(row)
    assert (tmp_path / "kernel_profile.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| MNM-p | xla | 4 |" in out and "| MNM-g | xla | 4 |" in out


def test_records_before_rules_render_as_mnm_p():
    row = {
        "implementation": "xla",
        "length": 4,
        "pieces": dict.fromkeys(kp.PIECES, 1.0),
        "pieces_in_lstm_steps": dict.fromkeys(kp.PIECES, 0.5),
        "ratio_to_lstm": 2.0,
    }
    assert "| MNM-p | xla | 4 | 0.50x (25 %)" in kp.render_table({"rows": [row]})
