"""Batch JPEG decoding with NVIDIA DALI: `mixed` (nvJPEG, output on GPU) or `cpu` (libjpeg-turbo).

DALI is used only as a *batch decoder* fed from the main process through `external_source`: our
tuple sampler is stateful, and DALI's parallel external source requires stateless callables, so
DALI cannot be the sampler (docs/REFERENCES.md#s2). Decoding the batch's
unique faces in one call keeps the GPU path simple and the CPU fallback bit-compatible.

A DALI batch fails as a whole when one JPEG is bad; the caller then falls back to per-item PIL
decoding for that batch, which pinpoints and counts the bad item.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["DaliFaceDecoder", "dali_available"]


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


class DaliFaceDecoder:
    """`decoder(list_of_jpeg_bytes) -> uint8 [N, H, W, 3]` (on `cuda:<device_id>` for `device="gpu"`).

    All images in a call must decode to the same size (one shard set has one face size).
    """

    def __init__(self, device: str = "cpu", max_batch_size: int = 256, num_threads: int = 2,
                 device_id: int | None = None):
        from nvidia.dali import fn, pipeline_def, types

        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu" and device_id is None:
            device_id = torch.cuda.current_device()
        self.device, self.device_id = device, device_id
        self.max_batch_size = max_batch_size
        decode_device = "mixed" if device == "gpu" else "cpu"

        @pipeline_def(batch_size=max_batch_size, num_threads=num_threads,
                      device_id=device_id if device == "gpu" else None, prefetch_queue_depth=1)
        def _pipe():
            enc = fn.external_source(name="jpegs", dtype=types.UINT8, ndim=1)
            return fn.decoders.image(enc, device=decode_device, output_type=types.RGB)

        self._pipe = _pipe()
        self._pipe.build()

    def __call__(self, jpegs: list[bytes]) -> torch.Tensor:
        if not jpegs:
            raise ValueError("nothing to decode")
        chunks = [self._run(jpegs[i:i + self.max_batch_size]) for i in range(0, len(jpegs), self.max_batch_size)]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def _run(self, jpegs: list[bytes]) -> torch.Tensor:
        self._pipe.feed_input("jpegs", [np.frombuffer(b, dtype=np.uint8) for b in jpegs])
        (out,) = self._pipe.run()
        if not out.is_dense_tensor():
            shapes = {tuple(out[i].shape()) for i in range(len(out))}
            raise ValueError(f"faces in one batch decode to different sizes {sorted(shapes)}")
        dense = out.as_tensor()
        if self.device == "cpu":
            return torch.from_numpy(np.array(dense))
        from nvidia.dali.plugin.pytorch import feed_ndarray

        result = torch.empty(dense.shape(), dtype=torch.uint8, device=f"cuda:{self.device_id}")
        feed_ndarray(dense, result, cuda_stream=torch.cuda.current_stream(self.device_id))
        return result
