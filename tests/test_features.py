"""Shared preprocessing equals its independent references (librosa, PIL) and rejects bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from shards.features import LogMel, faces_to_tensor


def _librosa_logmel(y, eps=1e-6, n_mels=40):
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        window="hamming",
        n_mels=n_mels,
        fmin=0,
        fmax=8000,
        htk=True,
        norm=None,
        power=2.0,
        center=True,
        pad_mode="constant",
    )
    return np.log(mel + eps)


@pytest.mark.parametrize("num_samples", [16000, 8123])
def test_logmel_matches_librosa(num_samples):
    rng = np.random.default_rng(0)
    t = np.arange(num_samples) / 16000.0
    y = (
        0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(num_samples)
    ).astype(np.float32)
    ref = _librosa_logmel(y)
    ours = LogMel()(torch.from_numpy(y)[None])
    assert ours.shape == (1, 1, 40, 1 + num_samples // 160) == (1, 1) + ref.shape
    # Both are float32 STFTs of the same frames: the log-mel agrees to ~1e-5 everywhere,
    # including near-silent bins (compared in absolute terms).
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, atol=1e-4, rtol=0)


def test_logmel_batch_rows_are_independent_and_device_follows_input():
    y = torch.randn(3, 4000) * 0.1
    m = LogMel(n_mels=24)
    batch = m(y)
    assert batch.shape == (3, 1, 24, 26) and batch.dtype == torch.float32
    for i in range(3):
        torch.testing.assert_close(batch[i], m(y[i : i + 1])[0], atol=1e-5, rtol=1e-5)
    assert batch.device == y.device


@pytest.mark.parametrize("f_min, f_max, n_mels", [(100.0, 4000.0, 40), (0.0, 8000.0, 64)])
def test_logmel_band_limited_and_denser_banks_match_librosa(f_min, f_max, n_mels):
    # f_max below Nyquist leaves high bins outside every triangle: the grouped filterbank never
    # reads them, and must still equal librosa's dense product
    import librosa

    y = (0.1 * np.random.default_rng(2).standard_normal(12345)).astype(np.float32)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        window="hamming",
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=True,
        norm=None,
        power=2.0,
        center=True,
        pad_mode="constant",
    )
    ours = LogMel(n_mels=n_mels, f_min=f_min, f_max=f_max)(torch.from_numpy(y)[None])
    np.testing.assert_allclose(ours[0, 0].numpy(), np.log(mel + 1e-6), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "batch, num_samples, kwargs",
    [
        (1, 32000, {}),
        (2, 32000, {}),
        (7, 32000, {}),
        (20, 32000, {}),
        (40, 32000, {}),  # 7: ragged CPU chunk
        (3, 200000, {}),  # > _CPU_CHUNK_FRAMES frames per row: one row per chunk
        (5, 777, {"n_mels": 128, "window": "hann"}),  # empty low triangles (narrower than a bin)
        (4, 3000, {"n_fft": 1024, "win_length": 1024, "hop_length": 256, "f_min": 300.0, "f_max": 3400.0}),
        (
            2,
            500,
            {"n_fft": 16, "win_length": 16, "hop_length": 8, "f_min": 100.0, "f_max": 200.0},
        ),  # no bin in any band
    ],
)
def test_logmel_fast_path_equals_dense_reference(batch, num_samples, kwargs):
    y = torch.randn(batch, num_samples, generator=torch.Generator().manual_seed(batch)) * 0.1
    m = LogMel(**kwargs)
    with torch.no_grad():
        fast = m(y)
    assert fast.shape == (batch, 1, m.n_mels, m.num_frames(num_samples)) and fast.is_contiguous()
    torch.testing.assert_close(fast, m.reference_forward(y), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(m(y.double()), fast)  # float64 input is computed in float32


def test_logmel_stays_differentiable_for_inputs_that_require_grad():
    y = (torch.randn(2, 4000) * 0.1).requires_grad_()
    m = LogMel(n_mels=24)
    out = m(y)
    out.sum().backward()
    assert y.grad is not None and y.grad.shape == y.shape and torch.isfinite(y.grad).all()
    with torch.no_grad():
        torch.testing.assert_close(out.detach(), m(y), atol=2e-5, rtol=1e-5)


def test_logmel_rejects_bad_shapes_and_params():
    m = LogMel()
    with pytest.raises(ValueError, match=r"\[N, samples\]"):
        m(torch.zeros(16000))
    with pytest.raises(ValueError, match="empty"):
        m(torch.zeros(0, 100))
    with pytest.raises(ValueError, match="window"):
        LogMel(window="blackman")
    with pytest.raises(ValueError, match="f_max"):
        LogMel(f_max=9000)


def test_faces_to_tensor_layouts_and_range():
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    a = faces_to_tensor(nhwc)
    b = faces_to_tensor(torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous())
    assert a.shape == (2, 3, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    expected = (nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(a.numpy(), expected, atol=1e-6)
    full = faces_to_tensor(np.array([[[[0, 255, 0]]]], dtype=np.uint8))
    assert full.min().item() == -1.0 and full.max().item() == 1.0


def test_faces_to_tensor_resize_is_antialiased_bilinear_like_pil():
    # A smooth image downscaled 2x: antialiased bilinear should agree with PIL's BILINEAR
    # (which filters over the support) to a couple of grey levels.
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.stack([(xx * 4) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
    ours = faces_to_tensor(img[None], size=32)[0]
    pil = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR)).astype(np.float32)
    pil = (pil.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    assert ours.shape == (3, 32, 32)
    assert np.abs(ours.numpy() - pil).mean() < 2.5 / 127.5


def test_faces_to_tensor_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        faces_to_tensor(np.zeros((1, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="4-D"):
        faces_to_tensor(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        faces_to_tensor(np.zeros((1, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        faces_to_tensor(np.zeros((0, 8, 8, 3), dtype=np.uint8))
