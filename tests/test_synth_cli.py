"""The command line: help text, a readable summary, and clear errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline.synth.__main__ import main


def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.synth", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for flag in (
        "--out",
        "--identities",
        "--videos-per-identity",
        "--clips-per-video",
        "--seed",
        "--workers",
        "--inject-faults",
        "--min-seconds",
        "--max-seconds",
    ):
        assert flag in result.stdout


def test_run_prints_summary_with_oracle_and_chance(tmp_path, capsys):
    out = tmp_path / "c"
    code = main(
        [
            "--out",
            str(out),
            "--identities",
            "3",
            "--videos-per-identity",
            "1",
            "--clips-per-video",
            "1",
            "--min-seconds",
            "1",
            "--max-seconds",
            "1",
            "--workers",
            "1",
            "--inject-faults",
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "chance 0.50" in text and "voxceleb2/test" in text and "injected faults" in text
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["spec"]["identities"] == 3 and truth["inject_faults"] is True
    assert (out / "faults.json").is_file()


def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--identities", "0"]) == 2
    assert "must all be >= 1" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["--out", str(tmp_path / "busy"), "--identities", "2"]) == 2
    assert "choose an empty or new --out" in capsys.readouterr().err


def test_progress_bars_hide_themselves_when_the_output_is_not_a_terminal(tmp_path):
    """One convention for every command: a bar only on a terminal (logs and CI stay clean), and
    --no-progress to turn it off there too."""
    cmd = [
        sys.executable,
        "-m",
        "pipeline.synth",
        "--out",
        str(tmp_path / "c"),
        "--identities",
        "2",
        "--videos-per-identity",
        "1",
        "--clips-per-video",
        "1",
        "--min-seconds",
        "1",
        "--max-seconds",
        "1",
        "--workers",
        "1",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "clip/s" not in result.stderr and "synth:" not in result.stderr
