"""Preprocessing shared by training and evaluation (ARCHITECTURE.md §4).

Both the streaming loader and the evaluation harness call these two functions, so a model never
sees faces or voices prepared one way in training and another way in evaluation.

* `faces_to_tensor`: uint8 crops -> float32 `[N, 3, S, S]` in [-1, 1]. The resize is antialiased
  bilinear because crops are usually *downscaled* (224 -> 112/128) and plain bilinear aliases.
* `LogMel`: a `torch.nn.Module`, so the filterbank and window live on the waveform's device and
  features are computed there (GPU when training on GPU). It is written directly with
  `torch.stft` and an HTK mel filterbank rather than `torchaudio.transforms.MelSpectrogram`:
  the result must equal `librosa.feature.melspectrogram(..., htk=True, norm=None)` (the reference
  the papers' Python code used), and writing the filterbank out makes that equality explicit and
  independent of torchaudio's deprecations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

__all__ = ["faces_to_tensor", "LogMel", "hz_to_mel_htk", "mel_filterbank_htk"]


def faces_to_tensor(faces: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 `[N, H, W, 3]` or `[N, 3, H, W]` (numpy or torch) -> float32 `[N, 3, size, size]`.

    Layout is detected from the channel position (last dim 3 -> NHWC). The tensor stays on the
    input's device, so a batch decoded on GPU is normalised there. `size=None` keeps H, W.
    """
    if isinstance(faces, np.ndarray) and not faces.flags.writeable:
        faces = faces.copy()  # PIL's arrays are read-only; torch warns on sharing those
    x = torch.as_tensor(faces)
    if x.dtype != torch.uint8:
        raise TypeError(f"faces must be uint8 (decoded JPEG pixels), got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"faces must be 4-D [N, H, W, 3] or [N, 3, H, W], got shape {tuple(x.shape)}")
    if x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] != 3:
        raise ValueError(f"faces need 3 RGB channels first or last, got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"refusing an empty face batch {tuple(x.shape)}")
    x = x.float()
    if size is not None and (x.shape[2] != size or x.shape[3] != size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 255.0)
    return x.div_(255.0).sub_(0.5).div_(0.5)  # in place: x is a fresh float copy (3 MB for B = 20 at 112 px)


def hz_to_mel_htk(hz: npt.ArrayLike) -> np.float64 | npt.NDArray[np.float64]:
    """HTK mel scale: 2595 * log10(1 + f / 700) (what `librosa` uses with `htk=True`)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz_htk(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank_htk(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular HTK-mel filters without area normalisation (librosa `norm=None`): `[n_mels, n_fft//2+1]`.

    Same construction as librosa: `n_mels + 2` points equally spaced in mel between f_min and
    f_max, triangles evaluated on the FFT bin centre frequencies.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_points = np.linspace(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max), n_mels + 2)
    hz_points = _mel_to_hz_htk(mel_points)
    widths = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    fbank: np.ndarray = np.maximum(0.0, np.minimum(lower, upper))
    return fbank


def _band_groups(fbank: np.ndarray, cost_per_group: float) -> list[tuple[int, int, int, int]]:
    """Split the mel bands into runs `(band0, band1, bin0, bin1)` for one small GEMM each.

    A triangle covers a few FFT bins (2 at 0 Hz, ~30 near 8 kHz with the defaults), so the dense
    `[n_mels, n_freq]` product is ~95% multiplications by zero. One GEMM per run over only the bins
    its bands touch skips most of them; every GEMM also has a fixed cost, so a small dynamic
    programme picks the runs minimising `sum(bands * bins) + cost_per_group * runs` (both per
    frame). Bands without any nonzero bin (more mels than bins at low frequencies) get no bins.
    """
    nonzero = [np.flatnonzero(row) for row in fbank]
    n = len(fbank)
    best, choice = [0.0] + [float("inf")] * n, [(0, 0, 0)] * (n + 1)
    for b in range(1, n + 1):
        c, d = fbank.shape[1], 0  # bin range of bands a..b-1, widened as a moves down
        for a in range(b - 1, -1, -1):
            if nonzero[a].size:
                c, d = min(c, int(nonzero[a][0])), max(d, int(nonzero[a][-1]) + 1)
            cost = best[a] + (b - a) * max(d - c, 0) + cost_per_group
            if cost < best[b]:
                best[b], choice[b] = cost, (a, c, d)
    groups, b = [], n
    while b > 0:
        a, c, d = choice[b]
        groups.append((a, b, c, d) if d > c else (a, b, 0, 0))
        b = a
    return groups[::-1]


class LogMel(torch.nn.Module):
    """Waveform `[N, samples]` (float, [-1, 1]) -> `log(mel_power + eps)` `[N, 1, n_mels, T]`.

    Framing matches librosa with `center=True, pad_mode="constant"` (zero padding, librosa 0.11's
    default): `T = 1 + samples // hop_length`. The window is the periodic Hamming window of
    `win_length`, zero-padded to `n_fft` in the centre, as both librosa and `torch.stft` do.

    The forward pass is shaped by its CPU cost in the loader's decode workers (~35% less than a
    plain `stft -> |.|^2 -> fbank @ power -> log`, which `reference_forward` still computes and
    autograd uses):

    * the filterbank runs as a few GEMMs over the bins each group of bands touches
      (`_band_groups`) instead of one dense GEMM that is mostly zeros (3x cheaper);
    * the power squares the spectrum in place and adds its real and imaginary halves (measured
      cheaper than `real.square() + imag.square()`, `abs().square()` or `(z * z.conj()).real`, and
      than feeding the squares to a filterbank with every weight repeated twice);
    * on CPU, rows go through in chunks of about `_CPU_CHUNK_FRAMES` frames: a chunk's spectrum
      (~2 MB) stays in cache between the FFT and the GEMMs, and the smaller temporaries no longer
      cross glibc's mmap threshold (page faults cost up to a few ms per batch). Other devices run
      the whole batch at once (fewer kernel launches).

    Rows never mix, so a row's features do not depend on the rest of the batch.
    """

    window: torch.Tensor  # buffers, registered in __init__
    fbank: torch.Tensor

    _CPU_CHUNK_FRAMES = 1000
    _GEMM_COST_PER_GROUP = 300.0  # multiply-adds per frame a GEMM call costs (150..600: same speed)

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        window: str = "hamming",
        f_min: float = 0.0,
        f_max: float | None = 8000.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        windows = {"hamming": torch.hamming_window, "hann": torch.hann_window}
        if window not in windows:
            raise ValueError(f"window must be one of {sorted(windows)}, got {window!r}")
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
        f_max = sample_rate / 2.0 if f_max is None else float(f_max)
        if not 0 <= f_min < f_max <= sample_rate / 2.0:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}")
        self.sample_rate, self.n_fft, self.win_length = sample_rate, n_fft, win_length
        self.hop_length, self.n_mels, self.eps = hop_length, n_mels, eps
        self.register_buffer(
            "window", windows[window](win_length, periodic=True, dtype=torch.float32), persistent=False
        )
        fbank = mel_filterbank_htk(sample_rate, n_fft, n_mels, f_min, f_max)
        self.register_buffer("fbank", torch.from_numpy(fbank).float(), persistent=False)
        self._groups = _band_groups(fbank, self._GEMM_COST_PER_GROUP)
        for i, (a, b, c, d) in enumerate(self._groups):
            self.register_buffer(f"_group{i}", self.fbank[a:b, c:d].contiguous(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of `num_samples` (centre padding)."""
        return 1 + num_samples // self.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be [N, samples], got shape {tuple(waveform.shape)}")
        if waveform.shape[0] == 0 or waveform.shape[1] == 0:
            raise ValueError(f"refusing an empty waveform batch {tuple(waveform.shape)}")
        x = waveform.float()
        if x.requires_grad and torch.is_grad_enabled():
            return self.reference_forward(x)  # the fast path writes into preallocated outputs
        n, frames = x.shape[0], self.num_frames(x.shape[1])
        out = torch.empty(n, self.n_mels, frames, dtype=x.dtype, device=x.device)
        rows = max(1, self._CPU_CHUNK_FRAMES // frames) if x.device.type == "cpu" else n
        for r in range(0, n, rows):
            self._log_mel_into(x[r : r + rows], out[r : r + rows])
        return out.unsqueeze(1)

    def _spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Complex STFT `[N, n_freq, T]` with librosa's centre framing (zero padding)."""
        pad = self.n_fft // 2
        return torch.stft(
            F.pad(x, (pad, pad), mode="constant"),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )

    def _log_mel_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        spec = self._spectrum(x)
        n, frames = out.shape[0], out.shape[2]
        # stft's [N, n_freq, T] has the frequency axis innermost in memory: rows of `power` are frames
        squares = torch.view_as_real(spec.transpose(1, 2)).square_()
        power = torch.add(squares[..., 0], squares[..., 1]).reshape(n * frames, -1)  # power=2.0
        mel = torch.empty(self.n_mels, n * frames, dtype=out.dtype, device=out.device)
        for i, (a, b, c, d) in enumerate(self._groups):
            if c == d:
                mel[a:b].zero_()
            else:
                torch.mm(getattr(self, f"_group{i}"), power[:, c:d].T, out=mel[a:b])
        torch.log(mel.add_(self.eps).view(self.n_mels, n, frames).transpose(0, 1), out=out)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain dense computation (differentiable; the fast path's test oracle)."""
        spec = self._spectrum(x.float())
        power = spec.real.square() + spec.imag.square()  # power=2.0
        mel = torch.matmul(self.fbank, power)  # [N, n_mels, T]
        return torch.log(mel + self.eps).unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, eps={self.eps}"
        )
