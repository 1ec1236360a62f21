"""Building blocks shared by AICANet's AIA/ACA and BIANet's PIA/NIA.

Every block works per sample (or per pair): no statistic is taken over the batch axis. The
authors' code divides features by their L2 norm *across the batch* (reference_code_study.md
§2.3), which makes a test prediction depend on the other tuples in the batch; here each channel
vector is L2-normalised over its own spatial positions instead, so affinities are cosines in
[-1, 1]. That also gives the fixed thresholds of AICANet Table VIII / BIANet Table 6
(0.01 ... 0.2) a scale they can act on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_affinity(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cosine affinity between the channels of ``q [N, C, P]`` and ``k [N, C, P]`` -> ``[N, C, C]``."""
    return F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(1, 2)


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


def shrink(e: torch.Tensor, eps: torch.Tensor, mode: str = "soft") -> torch.Tensor:
    """The clamp(E, +-eps) of AICANet Eq. 10.

    ``soft``: sign(E) max(|E| - eps, 0), the soft thresholding the paper describes (§III-C).
    ``hard``: E where |E| >= eps else 0, what the authors' code does.
    """
    if mode == "soft":
        return torch.sign(e) * F.relu(e.abs() - eps)
    if mode == "hard":
        return e * (e.abs() >= eps).to(e.dtype)
    raise ValueError(f"threshold mode {mode!r} unknown; allowed: ['soft', 'hard']")


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
    """IN of Eqs. 8 / 14: per-sample, per-channel normalisation over space, no affine."""
    return F.instance_norm(x, eps=1e-5)
