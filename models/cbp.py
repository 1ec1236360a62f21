"""Compact bilinear pooling (tensor sketch, Gao et al. 2016) for AICANet's relevance net (Eq. 1).

The bilinear feature of two vectors is their outer product ``x y^T`` (d1*d2 values). The tensor
sketch approximates it in D dims: count-sketch each vector with its own random hash ``h`` and sign
``s``, then circularly convolve the two sketches (a product in the Fourier domain). The result is
exactly the count sketch of ``x y^T`` under the hash ``(h1(i) + h2(j)) mod D`` and sign
``s1(i) s2(j)``, which is what the unit test checks against a naive computation.

Unlike the authors' version the hashes are drawn from a private ``torch.Generator`` (the
original reseeds NumPy's global RNG) and the sketch matrices are registered buffers, so they move
with ``.to()`` and are saved in checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class CompactBilinearPooling(nn.Module):
    """``(x [N, d1, P], y [N, d2, P]) -> [N, D]``: tensor-sketch bilinear pooling summed over P positions."""

    def __init__(self, in_dim1: int, in_dim2: int, out_dim: int = 4000, seed: int = 1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.out_dim = out_dim
        for name, dim in (("1", in_dim1), ("2", in_dim2)):
            index = torch.randint(out_dim, (dim,), generator=gen)
            sign = torch.randint(2, (dim,), generator=gen).float() * 2 - 1
            sketch = torch.zeros(dim, out_dim)
            sketch[torch.arange(dim), index] = sign
            self.register_buffer(f"hash{name}", index, persistent=True)
            self.register_buffer(f"sign{name}", sign, persistent=True)
            self.register_buffer(f"sketch{name}", sketch, persistent=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x, y = x.unsqueeze(-1), y.unsqueeze(-1)
        if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
            raise ValueError(
                f"CBP inputs must share batch and position axes, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        # FFTs have no bfloat16 kernels (and cuFFT half needs power-of-two sizes): compute in
        # float32 even under mixed-precision autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
            sx = torch.einsum("ndp,dk->npk", x.to(dtype), self.sketch1.to(dtype))
            sy = torch.einsum("ndp,dk->npk", y.to(dtype), self.sketch2.to(dtype))
            prod = torch.fft.rfft(sx, dim=-1) * torch.fft.rfft(sy, dim=-1)
            pooled: torch.Tensor = torch.fft.irfft(prod, n=self.out_dim, dim=-1).sum(dim=1)
            return pooled
