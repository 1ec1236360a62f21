"""Training logs: the JSONL record plus Accelerate's trackers (TensorBoard here), hyper-parameters
from the resolved config, a missing tracker library as a one-line config error."""

from __future__ import annotations

import pytest

from launch.config import ConfigError
from launch.logging_utils import RunLogger, flatten_config, read_log


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_flatten_config_gives_tracker_safe_hyper_parameters():
    flat = flatten_config(
        {
            "optim": {"lr": {"generator": 1e-3}, "milestones": [25, 40]},
            "train": {"resume": None, "cpu": True, "output_dir": "runs/x"},
        }
    )
    assert flat == {
        "optim.lr.generator": 1e-3,
        "optim.milestones": "[25, 40]",
        "train.resume": "null",
        "train.cpu": True,
        "train.output_dir": "runs/x",
    }


def test_rows_reach_jsonl_and_tensorboard_with_the_config_as_hparams(tmp_path):
    logger = RunLogger(
        tmp_path,
        True,
        ["tensorboard"],
        resume_step=None,
        hparams={"train": {"epochs": 3}, "model": {"name": "aicanet"}},
    )
    logger.log({"event": "train", "step": 10, "loss": 0.5, "lr": 1e-3, "note": "text is JSONL only"})
    logger.log({"event": "train", "step": 20, "loss": float("nan"), "lr": 1e-3})
    logger.close()
    assert [r["step"] for r in read_log(tmp_path / "train_log.jsonl")] == [10, 20]
    scalars = _scalars(tmp_path / "tensorboard")
    assert scalars["loss"] == [(10, 0.5)]  # the NaN stays in the JSONL only
    assert [s for s, _ in scalars["lr"]] == [10, 20]
    hparams = list((tmp_path / "tensorboard").rglob("hparams.yml"))
    assert hparams and "model.name: aicanet" in hparams[0].read_text()


def test_no_trackers_and_non_main_processes_write_only_what_they_should(tmp_path):
    RunLogger(tmp_path / "a", True, [], resume_step=None).close()
    assert (tmp_path / "a" / "train_log.jsonl").exists() and not (tmp_path / "a" / "tensorboard").exists()
    RunLogger(tmp_path / "b", False, ["tensorboard"], resume_step=None).close()
    assert not (tmp_path / "b").exists()


def test_a_tracker_that_is_not_installed_is_a_config_error_naming_it(tmp_path, monkeypatch):
    import launch.logging_utils as lu

    monkeypatch.setattr(lu, "_available_trackers", lambda: ["tensorboard"])
    with pytest.raises(ConfigError, match=r"'wandb', which is not installed \(pip install wandb\)"):
        RunLogger(tmp_path, True, ["wandb"], resume_step=None)
