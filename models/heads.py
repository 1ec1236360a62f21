"""Heads shared by every model: generator, modality discriminator, matching / verification classifiers.

All heads treat samples independently in eval mode (BatchNorm uses running statistics, dropout is
off, spectral norm stops its power iteration), so a tuple's score never depends on its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

FACE_MODALITY = 0
VOICE_MODALITY = 1


class BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that uses its running statistics for a single-sample training batch.

    Batch statistics of one sample are undefined (PyTorch raises); a last, one-tuple batch or a
    K = 1 batch of one pair must not crash a long run, and the running statistics are the best
    estimate available.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _linear(in_dim: int, out_dim: int, use_sn: bool) -> nn.Module:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.normal_(layer.weight, 0.0, 0.02)
    nn.init.zeros_(layer.bias)
    return spectral_norm(layer) if use_sn else layer


class Generator(nn.Module):
    """Maps any ``[N, C, H, W]`` map to a modality-independent embedding in (-1, 1)^D.

    One generator for both modalities (the adversarial game needs a shared space): 3x3 average
    pooling (the papers' "512 x 3 x 3"), then MLP C*9 -> hidden -> D with BN, LeakyReLU and tanh,
    as in the authors' code (docs/REFERENCES.md#a5).
    """

    def __init__(
        self, in_channels: int, hidden: int = 256, embed_dim: int = 128, dropout: float = 0.1, spectral: bool = True
    ):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.drop = nn.Dropout(dropout)
        self.fc1 = _linear(in_channels * 9, hidden, spectral)
        self.bn1 = BatchNorm1d(hidden)
        self.fc2 = _linear(hidden, embed_dim, spectral)
        self.bn2 = BatchNorm1d(embed_dim)
        for bn in (self.bn1, self.bn2):
            nn.init.normal_(bn.weight, 1.0, 0.02)
            nn.init.zeros_(bn.bias)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.pool(fmap).flatten(1))
        x = F.leaky_relu(self.bn1(self.fc1(x)), 0.2)
        return torch.tanh(self.bn2(self.fc2(x)))


class ModalityDiscriminator(nn.Module):
    """AICANet Eq. 12: predicts the modality (face = 0, voice = 1) of an embedding; returns 2 logits."""

    def __init__(self, embed_dim: int = 128, dropout: float = 0.1, spectral: bool = True):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = _linear(embed_dim, 2, spectral)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.drop(h))
        return logits


def classifier_input(anchor: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """AICANet Eq. 13 / BIANet Eq. 20 input: ``[exp(h_0 - h_1), ..., exp(h_0 - h_K)]``.

    ``anchor [B, D]`` (or ``[B, K, D]`` when the anchor embedding depends on the pairing),
    ``candidates [B, K, D]`` -> ``[B, K, D]`` (flatten the last two axes for the concat head).
    """
    if anchor.dim() == 2:
        anchor = anchor.unsqueeze(1)
    return torch.exp(anchor - candidates)


class MatchingClassifier(nn.Module):
    """``C_m`` of Eq. 13 / Eq. 20 for K >= 2 candidates: K logits.

    ``mode="concat"`` is the paper's head: one linear layer on the K*D concatenation, so it is
    built for one K (a batch with another K is an error). ``mode="shared"`` scores every
    candidate with the same D -> 1 layer and so accepts any K at test time (e.g. Fig. 5's
    K = 2..10 curve from one model); it is an extension, not in the papers.
    """

    def __init__(
        self,
        num_candidates: int,
        embed_dim: int = 128,
        dropout: float = 0.1,
        spectral: bool = True,
        mode: str = "concat",
    ):
        super().__init__()
        if num_candidates < 2:
            raise ValueError("MatchingClassifier needs num_candidates >= 2; use VerificationHead for K = 1")
        self.k = num_candidates
        self.mode = mode
        self.drop = nn.Dropout(dropout)
        if mode == "concat":
            self.fc = _linear(num_candidates * embed_dim, num_candidates, spectral)
        elif mode == "shared":
            self.fc = _linear(embed_dim, 1, spectral)
        else:
            raise ValueError(f"classifier mode {mode!r} unknown; allowed: ['concat', 'shared']")

    def forward(self, anchor: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        x = self.drop(classifier_input(anchor, candidates))
        if self.mode == "shared":
            scores: torch.Tensor = self.fc(x)
            return scores.squeeze(-1)
        if x.shape[1] != self.k:
            raise ValueError(
                f"this classifier was built for K={self.k} candidates, the batch has K={x.shape[1]} "
                "(set num_candidates, or classifier='shared' to score any K)"
            )
        logits: torch.Tensor = self.fc(x.flatten(1))
        return logits


class VerificationHead(nn.Module):
    """K = 1: one match logit from the 256-d feature ``[exp(h_0 - h_1), exp(h_1 - h_0)]``.

    The papers only say verification "classifies 256-dimensional features"; two exp-differences
    keep Eq. 13's form and give exactly 2 x 128 dims, symmetric in the two modalities.
    """

    def __init__(self, embed_dim: int = 128, dropout: float = 0.1, spectral: bool = True):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = _linear(2 * embed_dim, 1, spectral)

    def forward(self, anchor: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if candidates.shape[1] != 1:
            raise ValueError(f"verification head expects K=1 candidate, got K={candidates.shape[1]}")
        diff = classifier_input(anchor, candidates)[:, 0]
        x = torch.cat([diff, torch.reciprocal(diff)], dim=-1)
        logit: torch.Tensor = self.fc(self.drop(x))
        return logit.squeeze(-1)


def build_classifier(num_candidates: int, embed_dim: int, dropout: float, spectral: bool, mode: str) -> nn.Module:
    if num_candidates == 1:
        return VerificationHead(embed_dim, dropout, spectral)
    return MatchingClassifier(num_candidates, embed_dim, dropout, spectral, mode)
