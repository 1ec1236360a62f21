"""train.device: a missing GPU is a clear error when asked for, the choice is said once per rank,
and a multi-process CPU fallback is loud."""

import io
from types import SimpleNamespace

import pytest
import torch
from train_fakes import fake_config, run_fake

from launch.config import ConfigError, validate
from launch.train import main
from launch.trainer.device import DeviceUnavailable, announce_device, choose_device


def test_choose_device():
    assert choose_device("auto", cuda_available=False) == "cpu"
    assert choose_device("auto", cuda_available=True) == "cuda"
    assert choose_device("cpu", cuda_available=True) == "cpu"
    assert choose_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(DeviceUnavailable, match="--gpus all"):
        choose_device("cuda", cuda_available=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_gpu_exits_with_one_line(capsys):
    code = main(["--config", "launch/configs/demo.yaml", "train.device=cuda", "train.progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: train.device=cuda but torch sees no CUDA device")
    assert "nvidia-smi" in err[0] and "--gpus all" in err[0]


def test_config_device_key():
    base = {"model": {"name": "fake"}}
    assert validate({**base, "train": {"cpu": True}})["train"]["device"] == "cpu"
    assert validate(base)["train"]["device"] == "auto"
    with pytest.raises(ConfigError, match="allowed values: auto, cpu, cuda"):
        validate({**base, "train": {"device": "gpu"}})
    with pytest.raises(ConfigError, match="contradicts"):
        validate({**base, "train": {"cpu": True, "device": "cuda"}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_auto_trains_on_cpu_and_says_so_once(tmp_path, capsys):
    summary = run_fake(fake_config(tmp_path, device="auto", cpu=False, epochs=1, max_steps=2))
    err = capsys.readouterr().err
    assert summary["device"] == "cpu" and summary["mixed_precision"] == "no"
    assert err.count("[rank 0/1] training on cpu") == 1
    assert "WARNING" not in err  # one process on CPU is a normal CPU run


def fake_accelerator(world, rank=0, device="cpu"):
    return SimpleNamespace(
        process_index=rank,
        num_processes=world,
        is_main_process=rank == 0,
        device=torch.device(device),
        mixed_precision="no",
    )


@pytest.mark.parametrize("setting, world, warns", [("auto", 2, True), ("cpu", 2, False), ("auto", 1, False)])
def test_multi_process_cpu_fallback_is_loud(setting, world, warns):
    out = io.StringIO()
    announce_device(fake_accelerator(world), setting, stream=out)
    assert ("WARNING: 2 processes are training on CPU" in out.getvalue()) == warns
    other_rank = io.StringIO()
    announce_device(fake_accelerator(world, rank=1), setting, stream=other_rank)
    assert "WARNING" not in other_rank.getvalue()  # said once, by the main process


def test_overrides_may_precede_config_and_later_ones_win(capsys):
    """The Docker entrypoint passes train.device=cuda before the user's --config and overrides."""
    assert main(["train.device=cuda", "--config", "launch/configs/demo.yaml", "--print-config"]) == 0
    assert "device: cuda" in capsys.readouterr().out
    assert (
        main(["train.device=cuda", "--config", "launch/configs/demo.yaml", "train.device=cpu", "--print-config"]) == 0
    )
    assert "device: cpu" in capsys.readouterr().out
