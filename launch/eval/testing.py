"""Small evaluation inputs for tests and benchmarks: a synthetic eval store and a tiny checkpoint.

Why in the package (like `shards.testing`): the evaluation tests and `benchmarks/bench_eval_scoring.py`
both need them, and a benchmark must not import from `tests/` (that would need a sys.path edit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from shards.evalstore import EvalStoreWriter
from shards.format import make_key


def build_store(
    path: Path,
    n_ids: int = 12,
    videos: int = 2,
    clips: int = 2,
    face_size: int = 16,
    num_faces: int = 3,
    seconds: float = 0.5,
    dataset: str = "voxceleb1",
    first_id: int = 10001,
    items: list[tuple[str, str, str]] | None = None,
) -> Path:
    """An eval.zarr with `n_ids` identities x `videos` x `clips`, or exactly `items` (id, video, clip).

    Faces and voices carry an identity-dependent offset, so a model *can* tell identities apart.
    Genders alternate m/f by identity.
    """
    if items is None:
        items = [
            (f"id{first_id + i:05d}", f"vid{i:03d}x{v}", f"{c + 1:05d}")
            for i in range(n_ids)
            for v in range(videos)
            for c in range(clips)
        ]
    ids = sorted({i for i, _, _ in items})
    gender = {i: ("m" if n % 2 == 0 else "f") for n, i in enumerate(ids)}
    rng = np.random.default_rng(0)
    w = EvalStoreWriter(path, num_faces=num_faces, face_size=face_size, flush_every=8)
    for ident, video, clip in items:
        base = ids.index(ident) * 17 % 200
        faces = np.clip(rng.integers(0, 56, (num_faces, face_size, face_size, 3)) + base, 0, 255).astype(np.uint8)
        n = int(16000 * seconds * (0.5 + rng.random()))
        t = np.arange(n) / 16000.0
        audio = (3000 * np.sin(2 * np.pi * (150 + 20 * ids.index(ident)) * t) + rng.normal(0, 300, n)).astype(np.int16)
        w.append(
            key=make_key(dataset, ident, video, clip),
            identity=ident,
            video=video,
            clip=clip,
            faces=faces,
            audio=audio,
            gender=gender[ident],
            nationality=None,
        )
    return w.close()


def tiny_checkpoint(
    folder: Path, name: str = "baseline", num_candidates: int = 2, seed: int = 0, classifier: str = "concat"
) -> Path:
    """A model.pt of an untrained tiny model (random weights are enough to exercise the harness)."""
    import models
    from launch.checkpoint import model_payload

    torch.manual_seed(seed)
    cfg = {"name": name, **models.tiny_overrides(name), "num_candidates": num_candidates, "classifier": classifier}
    model = models.build_model(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        model_payload(model, cfg, {"face_size": 32, "crop_seconds": 0.5}, epoch=1.0, step=10), folder / "model.pt"
    )
    return folder
