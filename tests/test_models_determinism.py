"""Same seed -> bit-identical gradients on CPU with 2 threads (what CI's 2-core runner uses).

Tuples share items, so the models gather rows of per-item tensors with repeated indices. The
backward of plain ``x[index]`` is ``index_put_(accumulate=True)``, whose CPU kernel adds the
repeated rows' gradients with atomic adds in thread order once the tensor is large enough to be
split across threads: with 2 threads AICANet's gradients differed by ~1e-8 from run to run and
two trainings with the same seed drifted apart after a few steps (a flaky exact-resume test).
``models.batch.gather_rows`` gathers with ``index_select``, whose backward adds in index order.
"""

import contextlib

import pytest
import torch

from models import build_model, tiny_overrides
from models.batch import gather_rows

FACE, MELS, FRAMES = 48, 40, 81


@contextlib.contextmanager
def num_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_gather_rows_is_plain_indexing_forward():
    x = torch.randn(5, 3, 4)
    index = torch.tensor([[4, 0], [0, 0], [2, 4]])
    assert torch.equal(gather_rows(x, index), x[index])


def test_gather_rows_gradient_sums_repeated_rows_in_index_order_with_two_threads():
    """Bit-equal to a serial sum in index order, every time (plain x[index] failed 5 of 5 runs)."""
    torch.manual_seed(0)
    rows, repeats = 8, 4
    index = torch.arange(rows).repeat(repeats)  # every row gathered 4 times, spread across threads
    upstream = torch.randn(rows * repeats, 128, 5, 4)  # 81920 elements: large enough to be split
    expected = torch.zeros(rows, 128, 5, 4)
    for j, row in enumerate(index.tolist()):
        expected[row] += upstream[j]
    x = torch.zeros(rows, 128, 5, 4, requires_grad=True)
    with num_threads(2):
        for _ in range(30):
            (grad,) = torch.autograd.grad(gather_rows(x, index), x, upstream)
            assert torch.equal(grad, expected)


def _shared_item_batch(seed: int = 0) -> dict:
    """f2v batch of 6 tuples over 3 faces and 4 voices: every face anchors 2 tuples (4 pairs each)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "direction": "f2v",
        "faces": torch.rand(3, 3, FACE, FACE, generator=g) * 2 - 1,
        "voices": torch.randn(4, 1, MELS, FRAMES, generator=g),
        "anchor_index": torch.tensor([0, 1, 2, 0, 1, 2]),
        "candidate_index": torch.tensor([[0, 1], [2, 3], [1, 0], [3, 2], [0, 2], [1, 3]]),
        "label": torch.tensor([0, 1, 0, 1, 1, 0]),
    }


@pytest.mark.parametrize("name", ["aicanet", "bianet"])
def test_three_adam_steps_give_bit_identical_gradients_with_two_threads(name):
    batch = _shared_item_batch()

    def train() -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = build_model({"name": name, "num_candidates": 2, "total_epochs": 10, **tiny_overrides(name)})
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for step in range(3):
            terms = model.loss(model(batch), batch, epoch=step / 3)
            opt.zero_grad()
            (terms["total"] + terms["disc_total"]).backward()
            opt.step()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    with num_threads(2):
        first, second = train(), train()
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert torch.equal(a, b)
