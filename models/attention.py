"""Building blocks shared by AICANet's AIA/ACA and BIANet's PIA/NIA.

Every block works per sample (or per pair): no statistic is taken over the batch axis. The
authors' code divides features by their L2 norm *across the batch* (docs/REFERENCES.md#a4),
which makes a test prediction depend on the other tuples in the batch; here each channel
vector is L2-normalised over its own spatial positions instead, so affinities are cosines in
[-1, 1]. That also gives the fixed thresholds of AICANet Table VIII / BIANet Table 6
(0.01 ... 0.2) a scale they can act on.

Scale safety. In eval mode the backbones' BatchNorm layers use running statistics, which lag far
behind the weights in the first steps at the papers' learning rates (Adam 5e-2 on the encoders):
eval-mode feature maps then reach 1e10-1e23 although the training-mode ones are O(10). The
sum of squares of such a map overflows float32 (max 3.4e38), so a plain L2 normalisation or IN
silently returns zeros and a dot-product softmax returns NaN. Cosines, IN and the softmax
are invariant to (or, for the softmax, can factor out) a positive scale, so the helpers below
divide by the largest magnitude first when it is huge: the same equations, evaluated where
float32 can hold them. Below ``SAFE_MAGNITUDE`` nothing is rescaled (results are bit-identical
to the plain formulas).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# 2**32: squares of values up to this, summed over 1e4 positions, stay far below float32's max.
SAFE_MAGNITUDE = 2.0**32


def unit_scale(x: torch.Tensor, dim: int | tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / s, s)`` with ``s`` = max |x| over ``dim`` where that exceeds ``SAFE_MAGNITUDE``, else 1.

    For scale-invariant quantities (cosines, IN) and for factoring a scale out of softmax logits:
    see the module docstring.
    """
    peak = x.detach().abs().amax(dim=dim, keepdim=True)
    scale = torch.where(peak > SAFE_MAGNITUDE, peak, torch.ones_like(peak))
    return x / scale, scale


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``F.normalize(x, dim)`` that stays exact when the squares of ``x`` overflow float32."""
    return F.normalize(unit_scale(x, dim)[0], dim=dim)


def channel_affinity(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cosine affinity between the channels of ``q [N, C, P]`` and ``k [N, C, P]`` -> ``[N, C, C]``."""
    return l2_normalize(q, dim=-1) @ l2_normalize(k, dim=-1).transpose(1, 2)


def scaled_dot_softmax(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """softmax(query key^T / sqrt(P)) over the last axis for ``[N, C, P]`` inputs -> ``[N, C, C]``.

    Numerically safe form of the plain expression: with q = a q', k = b k' (a, b the per-sample
    peaks of ``unit_scale``) the logits are a b L', L' = q' k'^T / sqrt(P) of order 1, and
    softmax(a b L') = softmax(a b (L' - max_row L')). The shifted logits are <= 0 and are
    multiplied by a, then b, one at a time: a huge product becomes -inf (weight 0), the row's
    maximum stays exactly 0, so no inf - inf can occur. Plain q k^T of 1e20-sized eval-mode
    features overflows to +-inf and the softmax returns NaN.
    """
    q, a = unit_scale(query, (1, 2))
    k, b = unit_scale(key, (1, 2))
    logits = q @ k.transpose(1, 2) / math.sqrt(query.shape[-1])
    shifted = logits - logits.detach().amax(dim=-1, keepdim=True)
    return torch.softmax(shifted * a * b, dim=-1)


def attend(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Apply a row-stochastic channel attention ``[N, C, C]`` to ``values [N, C, P]``."""
    return weights @ values


class AdaptiveThreshold(nn.Module):
    """AICANet Eq. 9 (the ACA shrinkage layer), reused as BIANet's self-learned threshold.

    eps_i = sigmoid(FC(cat(P_x(|E|), P_y(|E|))))_i * GAP(|E|)_i: max pooling of |E| along rows
    and columns, a two-layer FC with a sigmoid giving a factor in (0, 1) per row, times the row's
    mean magnitude. Written on |E| as in deep residual shrinkage networks (the paper's [47]):
    the mean of a signed correlation would be ~0 and kill the threshold.

    With ``fixed`` set, eps is that constant (AICANet Table VIII, BIANet Table 6 rows) and the
    layer has no parameters.
    """

    def __init__(self, channels: int, fixed: float | None = None):
        super().__init__()
        self.fixed = fixed
        if fixed is None:
            self.fc1 = nn.Linear(2 * channels, channels)
            self.fc2 = nn.Linear(channels, channels)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """``e [N, C, C]`` -> per-row thresholds ``[N, C, 1]``."""
        if self.fixed is not None:
            return e.new_full((*e.shape[:2], 1), float(self.fixed))
        mag = e.abs()
        pooled = torch.cat([mag.amax(dim=2), mag.amax(dim=1)], dim=1)
        alpha = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))
        return (alpha * mag.mean(dim=2)).unsqueeze(-1)


THRESHOLD_MODES = ("gate", "soft", "hard")


def shrink(e: torch.Tensor, eps: torch.Tensor, mode: str = "soft") -> torch.Tensor:
    """The clamp(E, +-eps) of AICANet Eq. 10 as a transform of E (the ``soft`` and ``hard`` modes).

    ``soft``: sign(E) max(|E| - eps, 0), the soft thresholding the paper describes (§III-C).
    ``hard``: E where |E| >= eps else 0, what the authors' code does.
    Both feed a softmax, which only sees differences: soft thresholding shrinks the strong entries
    by eps and so *raises* the weak entries' share of the attention; the hard form moves weak
    entries to the neutral logit 0 (a weak positive loses weight, a weak negative gains it). The
    ``gate`` mode (:func:`threshold_gate`) suppresses them instead.
    """
    if mode == "soft":
        return torch.sign(e) * F.relu(e.abs() - eps)
    if mode == "hard":
        return e * (e.abs() >= eps).to(e.dtype)
    raise ValueError(f"threshold mode {mode!r} unknown; allowed: ['soft', 'hard']")


def threshold_gate(strength: torch.Tensor, eps: torch.Tensor, width: float) -> torch.Tensor:
    """log sigmoid((strength - eps) / width), to be *added* to softmax logits.

    It multiplies each entry's attention weight by a sigmoid gate that is ~1 above the threshold
    and falls to ~0 below it (e^-5 at 5 widths below): the sub-threshold entries are suppressed,
    which is what the thresholds of AICANet Eqs. 9-11 and BIANet Eqs. 10-11 are for. Unlike a hard
    mask it is smooth in eps, so the self-learned threshold layer receives a gradient, and no row
    can lose all its weight (every logit stays finite).
    """
    return F.logsigmoid((strength - eps) / width)


def thresholded_logits(
    e: torch.Tensor, eps: torch.Tensor | None, scale: torch.Tensor | float, mode: str, width: float
) -> torch.Tensor:
    """Softmax logits ``scale * E`` with the correction threshold ``eps`` applied (AICANet Eqs. 10-11).

    ``scale`` carries delta and, for the inter-modal branch, sign(R) (Eq. 4). ``gate`` keeps E and
    gates the entries with |E| < eps out (:func:`threshold_gate`); ``soft`` / ``hard`` transform E
    (:func:`shrink`). ``eps=None`` is no threshold (AICANet "without ACA").
    """
    if eps is None:
        return scale * e
    if mode == "gate":
        return scale * e + threshold_gate(e.abs(), eps, width)
    return scale * shrink(e, eps, mode)


class SEMask(nn.Module):
    """SENet gate giving a per-channel mask in (0, 1) from a map (DEF Eq. 8, PIA Eq. 14).

    The output bias starts at ``init_bias`` (default -2.2, mask ~ 0.1): the fusions
    (1 - m) x + m IN(attention) then start close to the identity, so the backbone features reach
    the generator unchanged while the attention branch is still random. With masks at 0.5 (the
    default init of a sigmoid gate) AICANet's Eq. 8 weights x by 1 - 0.5 - 0.5 = 0 at the first
    step, and on a synthetic task the model did not learn at all (tests/test_models_learning.py).
    """

    def __init__(self, channels: int, reduction: int = 4, init_bias: float = -2.2):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.constant_(self.fc2.bias, init_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return gate[:, :, None, None]


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """IN of Eqs. 8 / 14: per-sample, per-channel normalisation over space, no affine.

    Rescaled first when a channel's peak is huge (``unit_scale``): IN is scale-invariant up to
    its eps, and without it the variance of a 1e20-sized map overflows and IN returns zeros.
    """
    return F.instance_norm(unit_scale(x, (2, 3))[0], eps=1e-5)


# ---- AICANet Table IX: the de-interference alternatives to ACA -----------------------------------


def low_rank(e: torch.Tensor, ratio: float) -> torch.Tensor:
    """Principal-component filtering [53] of correlation matrices ``[N, C, C]``: the best rank-r
    approximation E V_r V_r^T (V_r: the top r right singular vectors, r = max(1, round(ratio * C)));
    the dropped components are taken as interference.

    The subspace V_r is estimated without gradient, as a PCA preprocessing step would be: the
    gradient of an SVD has 1 / (s_i^2 - s_j^2) terms and correlations over few positions have
    many equal (zero) singular values, which made it non-finite. Computed in float32 (SVD has no
    half-precision kernels).
    """
    r = max(1, round(ratio * e.shape[-1]))
    with torch.no_grad():
        v = torch.linalg.svd(e.float(), full_matrices=False)[2][..., :r, :].transpose(-2, -1)
    filtered: torch.Tensor = ((e.float() @ v) @ v.transpose(-2, -1)).to(e.dtype)
    return filtered


def lowpass(e: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Frequency filtering [54] of correlation matrices ``[N, C, C]``: keep the 2-D Fourier
    coefficients whose frequency is at most ``cutoff`` of the Nyquist frequency along both axes,
    drop the high-frequency rest as interference."""
    c1, c2 = e.shape[-2:]
    f1 = torch.fft.fftfreq(c1, device=e.device).abs() <= cutoff * 0.5
    f2 = torch.fft.fftfreq(c2, device=e.device).abs() <= cutoff * 0.5
    spectrum = torch.fft.fft2(e.float()) * (f1[:, None] & f2[None, :])
    filtered: torch.Tensor = torch.fft.ifft2(spectrum).real.to(e.dtype)
    return filtered


class FeatureShrinkage(nn.Module):
    """Shrinkage thresholds [47] (deep residual shrinkage networks) on *features* ``[N, C, P]``:
    a per-channel threshold tau = sigmoid(FC(GAP |x|)) * GAP |x| and soft thresholding
    sign(x) max(|x| - tau, 0). AICANet Table IX's first alternative: denoise the features with a
    learned but correlation-blind threshold, then attend without correcting the correlation."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels)
        self.fc2 = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag = x.abs().mean(dim=-1)
        tau = torch.sigmoid(self.fc2(F.relu(self.fc1(mag)))) * mag
        return torch.sign(x) * F.relu(x.abs() - tau[..., None])
