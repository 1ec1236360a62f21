"""Batch JPEG decoding with NVIDIA DALI: `mixed` (nvJPEG, output on GPU) or `cpu` (libjpeg-turbo).

DALI is used only as a *batch decoder* fed from the main process through `external_source`: our
tuple sampler is stateful, and DALI's parallel external source requires stateless callables, so
DALI cannot be the sampler (docs/REFERENCES.md#s2). Decoding the batch's
unique faces in one call keeps the GPU path simple.

Not bit-compatible with the CPU path: DALI's ``cpu`` backend and PIL both use libjpeg-turbo but
may round the IDCT differently (at most 2 levels, tests/test_loader_decode.py), and nvJPEG
(``mixed``) is a different decoder whose pixels differ from libjpeg-turbo's by about one level
on average. The GPU tolerance has not been measured in this project (no GPU has been lent to
it); ``benchmarks/gpu_check.sh`` measures it and docs/LOADER.md records the number once it runs.

:class:`GuardedFaceDecoder` is how the loader uses DALI: construction and every batch run inside
the CPU fallback path. A DALI batch fails as a whole when one JPEG is bad; that batch is then
decoded per item on the CPU (PIL), which pinpoints and counts the bad item, and the DALI pipeline
is rebuilt for the next batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["DaliFaceDecoder", "DaliStartupError", "GuardedFaceDecoder", "dali_available"]


class DaliStartupError(RuntimeError):
    """``data.face_decoder: dali`` was forced, but DALI cannot decode on this machine."""


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

    def __init__(
        self, device: str = "cpu", max_batch_size: int = 256, num_threads: int = 2, device_id: int | None = None
    ):
        from nvidia.dali import fn, pipeline_def, types

        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu" and device_id is None:
            device_id = torch.cuda.current_device()
        self.device, self.device_id = device, device_id
        self.max_batch_size = max_batch_size
        decode_device = "mixed" if device == "gpu" else "cpu"

        @pipeline_def(
            batch_size=max_batch_size,
            num_threads=num_threads,
            device_id=device_id if device == "gpu" else None,
            prefetch_queue_depth=1,
        )
        def _pipe():
            enc = fn.external_source(name="jpegs", dtype=types.UINT8, ndim=1)
            return fn.decoders.image(enc, device=decode_device, output_type=types.RGB)

        self._pipe = _pipe()
        self._pipe.build()

    def __call__(self, jpegs: list[bytes]) -> torch.Tensor:
        if not jpegs:
            raise ValueError("nothing to decode")
        chunks = [self._run(jpegs[i : i + self.max_batch_size]) for i in range(0, len(jpegs), self.max_batch_size)]
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


class GuardedFaceDecoder:
    """DALI batch decoding with the CPU decoder as the safety net, and counters for the log.

    - Start-up (building the pipeline: nvJPEG, the driver, the CUDA context) happens here. If it
      fails, ``forced`` (``data.face_decoder: dali``) raises :class:`DaliStartupError`; otherwise
      one warning names the cause and faces decode on the CPU for the rest of the run.
    - A batch DALI cannot decode is decoded on the CPU by ``cpu_decode`` (per item: a bad JPEG
      becomes a counted skip) and the pipeline is rebuilt, since a DALI pipeline is not promised to
      be usable after an error. If the CPU finds nothing wrong with that batch, the failure was
      DALI's own; after ``max_dali_failures`` such failures in a row DALI is given up (one
      warning) or, when forced, the run stops with the cause.

    ``kind`` is what decodes now: ``dali-gpu``, ``dali-cpu`` or ``pil`` (after giving up).
    """

    def __init__(self, kind: str, forced: bool, build: Callable[[], Callable], max_dali_failures: int = 3):
        if kind not in ("dali-gpu", "dali-cpu"):
            raise ValueError(f"kind must be 'dali-gpu' or 'dali-cpu', got {kind!r}")
        self.kind, self.forced, self._build = kind, forced, build
        self.max_dali_failures = max_dali_failures
        self.fallback_batches = 0  # batches decoded on the CPU after DALI failed on them
        self.restarts = 0  # pipelines rebuilt after a failure
        self.failures_in_a_row = 0  # DALI failures on batches the CPU decoded without a bad item
        self.disabled_cause: str | None = None
        self._decoder = self._start()

    def _start(self):
        try:
            return self._build()
        except Exception as exc:  # noqa: BLE001 - any start-up failure means "no DALI here"
            self._give_up(f"the DALI decoder could not start ({type(exc).__name__}: {exc})", exc)
            return None

    def _give_up(self, cause: str, exc: BaseException | None = None) -> None:
        if self.forced:
            raise DaliStartupError(
                f"data.face_decoder is 'dali' but {cause}; check the NVIDIA driver and "
                f"nvJPEG, or set data.face_decoder: auto (falls back to the CPU) or pil"
            ) from exc
        self.kind, self.disabled_cause, self._decoder = "pil", cause, None
        warnings.warn(
            f"TupleLoader: faces decode on the CPU (PIL) for the rest of this run: {cause}",
            RuntimeWarning,
            stacklevel=3,
        )

    def decode(self, jpegs: list[bytes], cpu_decode: Callable[[], list]) -> tuple[list, bool]:
        """``(faces, by_dali)``: one entry per JPEG; on the CPU path an entry may be the BadSample
        that ``cpu_decode`` returns for a bad item."""
        if self._decoder is None:
            return cpu_decode(), False
        try:
            pixels = self._decoder(jpegs)
        except Exception as exc:  # noqa: BLE001 - one bad JPEG fails DALI's whole batch
            self.fallback_batches += 1
            faces = cpu_decode()
            data_error = any(isinstance(f, Exception) for f in faces)
            self.failures_in_a_row = 0 if data_error else self.failures_in_a_row + 1
            if self.failures_in_a_row >= self.max_dali_failures:
                self._give_up(
                    f"DALI failed on {self.failures_in_a_row} batches in a row whose JPEGs the CPU "
                    f"decodes (last: {type(exc).__name__}: {exc})",
                    exc,
                )
            else:
                self.restarts += 1
                self._decoder = self._start()
            return faces, False
        self.failures_in_a_row = 0
        return [pixels[i] for i in range(len(jpegs))], True

    def report(self) -> dict:
        return {"face_decoder": self.kind, "dali_restarts": self.restarts, "dali_disabled_cause": self.disabled_cause}
