"""Checkpoints: atomic on disk, exact to resume, and loadable with ``weights_only=True``.

Layout of a run folder::

    <output_dir>/checkpoints/
        step-000000120/          one checkpoint (periodic or end of epoch)
            model.pt             {"format": "voxface-model/1", "model_config", "data_config",
                                  "state_dict", "epoch", "step"}  <- what evaluation loads
            trainer.pt           optimiser + scheduler states, counters, best metric
            rank-00000.pt ...    per process: RNG states and the loader's state_dict
            meta.json            small human-readable summary
        best/                    model.pt + meta.json only (weights, not resumable): the
                                 checkpoint with the best VALIDATION accuracy
        latest                   text file naming the newest complete checkpoint folder

Why a folder renamed into place: every process writes its own ``rank-*.pt`` into a temporary
folder, the main process renames the folder once everybody is done. A kill at any moment leaves
either the previous checkpoint set or the new one, never a half-written folder that looks whole;
``latest`` is replaced atomically after the rename. Multi-node runs need ``output_dir`` on a
shared filesystem (as every multi-node checkpointing scheme does).

Why per-rank files: each process owns a different slice of the tuple stream and its own RNG
streams; restoring them per rank is what makes the loss curve after a resume equal the
uninterrupted one. A run on another number of processes reads every old rank's file instead (an
elastic resume, ``launch/trainer/elastic.py``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from launch.storage import describe as describe_storage_fault

MODEL_FORMAT = "voxface-model/1"
MODEL_FILE = "model.pt"
TRAINER_FILE = "trainer.pt"
LATEST_FILE = "latest"
BEST_NAME = "best"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says what to do."""


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict:
    """All RNG streams a training step may draw from, in types ``weights_only`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    # random.setstate needs tuples all the way down; serialisation may hand back lists.
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


# ----------------------------------------------------------------------------- writing


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def model_payload(model: torch.nn.Module, model_config: dict, data_config: dict, epoch: float, step: int) -> dict:
    """The evaluation contract (ARCHITECTURE.md, train brief): plain dict of plain types."""
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return {
        "format": MODEL_FORMAT,
        "model_config": dict(model_config),
        "data_config": complete_data_config(data_config),
        "state_dict": state,
        "epoch": float(epoch),
        "step": int(step),
    }


def complete_data_config(data_config: dict | None) -> dict:
    """The data config as the loader ran it: every ``LoaderConfig`` default filled, shard folders
    absolute.

    Why: a checkpoint outlives the shell that trained it. A relative ``shards`` path meant
    something only in the training run's working directory (evaluate's identity-disjointness
    check and the model card read it later, from elsewhere), and an unfilled default left the
    preprocessing (crop length, log-mel settings) to whatever the loader's defaults are on the
    day the checkpoint is read. Unknown keys are kept as they are.
    """
    from shards.config import LoaderConfig

    full = {**LoaderConfig().to_dict(), **dict(data_config or {})}
    shards = full.get("shards") or []
    full["shards"] = [os.path.abspath(s) for s in ([shards] if isinstance(shards, str) else shards)]
    return full


class CheckpointWriter:
    """Writes checkpoint folders under ``<output_dir>/checkpoints`` from every process.

    ``barrier`` is the accelerator's ``wait_for_everyone`` (a no-op in a single process); every
    process must call :meth:`save` with the same name.
    """

    def __init__(self, root: str | Path, rank: int, world_size: int, barrier, keep_last: int):
        self.root = Path(root)
        self.rank = rank
        self.world_size = world_size
        self.barrier = barrier
        self.keep_last = keep_last
        self.is_main = rank == 0
        if self.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".tmp-*"):  # left by a run killed while saving
                shutil.rmtree(stale, ignore_errors=True)
        self.barrier()

    def save(
        self,
        name: str,
        *,
        model: dict,
        trainer: dict | None,
        rank_state: dict | None,
        meta: dict,
        mark_latest: bool = True,
    ) -> Path:
        """Write checkpoint ``name``; a storage fault is a CheckpointError naming the path and cause
        (disk full, read-only), and the previous checkpoints stay as they were."""
        try:
            return self._save(
                name, model=model, trainer=trainer, rank_state=rank_state, meta=meta, mark_latest=mark_latest
            )
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            shutil.rmtree(self.root / f".tmp-{name}", ignore_errors=True)
            raise CheckpointError(describe_storage_fault(exc, self.root / name, "write checkpoint")) from None

    def _save(
        self, name: str, *, model: dict, trainer: dict | None, rank_state: dict | None, meta: dict, mark_latest: bool
    ) -> Path:
        tmp = self.root / f".tmp-{name}"
        final = self.root / name
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.barrier()
        if rank_state is not None:  # None: a weights-only checkpoint (best)
            torch.save(rank_state, tmp / f"rank-{self.rank:05d}.pt")
        if self.is_main:
            torch.save(model, tmp / MODEL_FILE)
            if trainer is not None:
                torch.save(trainer, tmp / TRAINER_FILE)
            (tmp / "meta.json").write_text(
                json.dumps(
                    {**meta, "world_size": self.world_size, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2
                )
            )
        self.barrier()
        if self.is_main:
            if final.exists():  # re-saving the same name (e.g. best): swap, then delete the old one
                old = self.root / f".tmp-old-{name}"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            if mark_latest:
                _atomic_write_text(self.root / LATEST_FILE, name + "\n")
                self._prune()
        self.barrier()
        return final

    def _prune(self) -> None:
        latest = read_latest(self.root)
        steps = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for old in steps[: -self.keep_last]:
            if old != latest:
                shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- reading


def read_latest(root: str | Path) -> Path | None:
    """Newest complete checkpoint folder under ``root`` (``<output_dir>/checkpoints``), or None."""
    candidates = _resumable_newest_first(Path(root))
    return candidates[0] if candidates else None


def _resumable_newest_first(root: Path) -> list[Path]:
    """The folder ``latest`` names first, then every other step folder from the newest (a pointer
    may be missing when a run was killed between the rename and the pointer update)."""
    steps = sorted((p for p in root.glob("step-*") if (p / TRAINER_FILE).is_file()), reverse=True)
    pointer = root / LATEST_FILE
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named in steps:
            steps.remove(named)
            steps.insert(0, named)
    return steps


def unreadable_files(ckpt_dir: Path) -> list[str]:
    """Files of a checkpoint folder that cannot be read back (truncated or damaged), cheaply: every
    file torch writes is a zip whose directory sits at its end, so truncation shows on opening."""
    problems = []
    meta = ckpt_dir / "meta.json"
    world = None
    try:
        world = json.loads(meta.read_text()).get("world_size")
    except (OSError, ValueError):
        problems.append("meta.json")
    names = [MODEL_FILE, TRAINER_FILE] + [f"rank-{r:05d}.pt" for r in range(world or 0)]
    for name in names:
        try:
            with zipfile.ZipFile(ckpt_dir / name) as archive:
                archive.infolist()
        except (OSError, zipfile.BadZipFile):
            problems.append(name)
    return problems


def latest_intact(root: str | Path, warn=None) -> Path | None:
    """The newest checkpoint under ``root`` whose files all read back; each damaged newer one is
    skipped with a warning through ``warn`` (one line naming the folder and the damaged files)."""
    for candidate in _resumable_newest_first(Path(root)):
        damaged = unreadable_files(candidate)
        if not damaged:
            return candidate
        if warn is not None:
            warn(
                f"warning: checkpoint {candidate} is damaged ({', '.join(damaged)} cannot be read); "
                f"falling back to the previous one"
            )
    return None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def resolve_resume(resume: str | None, checkpoint_root: Path, warn=_stderr) -> Path | None:
    """``train.resume`` → checkpoint folder (None = start fresh). Errors say what to do.

    ``auto`` takes the newest checkpoint that reads back whole: a ``latest`` left truncated (disk
    full, a copy cut short) is skipped with a warning for the previous intact one; a damaged
    folder named explicitly is an error, since the user asked for exactly that one."""
    if resume is None:
        return None
    if resume == "auto":
        if not _resumable_newest_first(Path(checkpoint_root)):
            return None
        found = latest_intact(checkpoint_root, warn)
        if found is None:
            raise CheckpointError(
                f"no intact checkpoint under {checkpoint_root} (every one is damaged); "
                f"start a fresh run with another train.output_dir"
            )
        return found
    path = Path(resume)
    if path.is_file() and path.name in (MODEL_FILE, TRAINER_FILE):
        path = path.parent
    if path.is_dir() and (path / "checkpoints").is_dir():  # a run folder
        latest = read_latest(path / "checkpoints")
        if latest is None:
            raise CheckpointError(f"train.resume={resume}: run folder has no complete checkpoint")
        return latest
    if not (path / TRAINER_FILE).is_file():
        raise CheckpointError(
            f"train.resume={resume}: not a checkpoint folder (expected {TRAINER_FILE} inside). "
            f"Use train.resume=auto to continue the run in train.output_dir, or point at "
            f"<output_dir>/checkpoints/step-NNNNNNNNN"
        )
    return path


def _load(path: Path, mmap: bool = False) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"missing checkpoint file {path}") from None
    except Exception as exc:  # unpickling error, truncated file, foreign file
        raise CheckpointError(f"cannot read checkpoint file {path}: {exc}") from None


def load_trainer_state(ckpt_dir: Path, rank: int, world_size: int) -> tuple[dict, dict, dict]:
    """``(model_payload, trainer_state, rank_state)`` of a checkpoint for this process.

    With the checkpoint's own number of processes, ``rank_state`` is this rank's file. With another
    (an elastic resume, ``launch/trainer/elastic.py``) it is ``{"rng": old rank ``rank``'s RNG
    states, or None where there was no such rank, "loader": [every old rank's loader state]}``:
    the loader regroups the rest of the epoch from all of them."""
    ckpt_dir = Path(ckpt_dir)
    trainer = _load(ckpt_dir / TRAINER_FILE)
    saved_world = trainer.get("world_size")
    if not isinstance(saved_world, int) or saved_world < 1:
        raise CheckpointError(f"{ckpt_dir}/{TRAINER_FILE} records no valid world_size ({saved_world!r})")
    model = _load(ckpt_dir / MODEL_FILE)
    if saved_world == world_size:
        return model, trainer, _load(ckpt_dir / f"rank-{rank:05d}.pt")
    ranks = [_load(ckpt_dir / f"rank-{r:05d}.pt") for r in range(saved_world)]
    rng = ranks[rank]["rng"] if rank < saved_world else None
    return model, trainer, {"rng": rng, "loader": [r["loader"] for r in ranks]}


def read_model_file(path: str | Path, mmap: bool = False) -> dict:
    """The ``model.pt`` payload of a checkpoint folder, a run folder (best, else latest) or a file.

    ``mmap=True`` maps the weights instead of reading them: for callers that only need the
    configs (e.g. evaluate's identity-disjointness check), so no weight bytes are read twice."""
    path = Path(path)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            path = path / MODEL_FILE
        elif (path / "checkpoints").is_dir():
            best = path / "checkpoints" / BEST_NAME / MODEL_FILE
            latest = read_latest(path / "checkpoints")
            if best.is_file():
                path = best
            elif latest is not None:
                path = latest / MODEL_FILE
            else:
                raise CheckpointError(f"{path}: run folder without any checkpoint")
        else:
            raise CheckpointError(
                f"{path}: no {MODEL_FILE} here (give a checkpoint folder, a run folder or a {MODEL_FILE} file)"
            )
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = _load(path, mmap=mmap)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: format {found!r}, expected {MODEL_FORMAT!r}")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the model of a checkpoint and load its weights, in eval mode on ``device``.

    The payload's other fields (``data_config`` with the preprocessing settings, ``epoch``,
    ``step``) are available via :func:`read_model_file`; a caller that needs both reads the file
    once and calls :func:`model_from_payload`.
    """
    return model_from_payload(read_model_file(path), device, source=path)


def model_from_payload(
    payload: dict, device: str | torch.device = "cpu", source: str | Path = "checkpoint"
) -> torch.nn.Module:
    """The model of a :func:`read_model_file` payload with its weights, in eval mode on ``device``."""
    import models  # launch depends on models, never the reverse

    model = models.build_model(dict(payload["model_config"]))
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit the model built from its own config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval()
