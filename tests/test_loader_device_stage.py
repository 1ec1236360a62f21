"""The loader's device stage: on CPU a no-op (the CPU path is unchanged); on CUDA (skipped here)
pinned, non-blocking copies on the loader's stream give the same batch as plain copies."""

import numpy as np
import pytest
import torch

from shards.assemble import finish_batch
from shards.device_stage import DeviceStage, to_device


def host_batch():
    rng = np.random.default_rng(0)
    return {
        "direction": "v2f",
        "faces": rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8),
        "voices": rng.standard_normal((2, 1, 4, 5)).astype(np.float32),
        "anchor_index": [0, 1],
        "candidate_index": [[0, 1], [2, 3]],
        "label": [1, 0],
    }


def test_cpu_stage_is_a_no_op():
    stage = DeviceStage(torch.device("cpu"))
    t = torch.arange(4)
    assert to_device(t, torch.device("cpu")) is t
    assert stage.mark() is None
    with stage.side_stream():
        batch = finish_batch(host_batch(), torch.device("cpu"), 8)
    assert stage.hand_over(batch) is batch
    assert batch["candidate_index"].tolist() == [[0, 1], [2, 3]] and batch["faces"].shape == (4, 3, 8, 8)


@pytest.mark.gpu
def test_cuda_stage_hands_over_the_same_batch():
    cuda = torch.device("cuda")
    stage = DeviceStage(cuda)
    with stage.side_stream():
        batch = finish_batch(host_batch(), cuda, 8)
    batch = stage.hand_over(batch)
    ref = finish_batch(host_batch(), torch.device("cpu"), 8)
    for key in ("faces", "voices", "anchor_index", "candidate_index", "label"):
        assert batch[key].device.type == "cuda"
        torch.testing.assert_close(batch[key].cpu(), ref[key])
