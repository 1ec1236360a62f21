"""The loader's part of the experiment config (the `data` section), validated in one place.

Every key has a default, unknown keys and bad values raise `ValueError` naming the key and what is
allowed (the config loader in `launch/config.py` relies on that message to guide users).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

DIRECTIONS = ("v2f", "f2v", "both")
POSITIVES = ("same_clip", "same_video", "different_video")
FRAMES = ("random", "first", "middle")
FACE_DECODERS = ("auto", "pil", "dali")
DECODE_WORKERS = ("auto", "processes", "threads")
BUFFER_AUDIO = ("clip", "window", "crop")
MEMBER_READS = ("stream", "workers")
DEFAULT_WINDOW_FACTOR = 1.25  # buffer_window_seconds when unset: this x crop_seconds (docs/LOADER.md, "Compact audio":
# the widest window that keeps 4,200 samples of 2 s crops within 0.4 GB with WAV as well as FLAC members, when the
# buffer holds the bytes: member_reads: stream)

# LogMel kwargs a config may set; the sample rate is not one of them: it comes from the shards' index.json
_LOGMEL_KEYS = {"n_fft", "win_length", "hop_length", "n_mels", "window", "f_min", "f_max", "eps"}


@dataclass
class LoaderConfig:
    """All loader settings. See docs/LOADER.md for the meaning of each key."""

    shards: list[str] = field(default_factory=list)  # one or more `<out>/<dataset>/<split>` folders
    direction: str = "v2f"  # v2f | f2v | both (alternate per batch: even steps v2f)
    k: int = 2  # candidates per tuple; 1 = balanced verification pairs
    batch_size: int = 50  # tuples per batch
    positive: str = "different_video"  # same_clip | same_video | different_video
    gender_matched_negatives: bool = False
    buffer_size: int = 2000  # samples (encoded) held per rank in the identity-aware buffer
    num_workers: int = 2  # decode workers (processes or threads), and reader streams per rank unless set below
    read_streams: int | None = None  # reader streams per rank; None: num_workers (fixes the sample order)
    prefetch: int = 2  # batches sampled + decoding ahead of the one being consumed
    face_size: int | None = None  # None: the shards' native crop size
    frame: str = "random"  # which of the F stored face frames: random | first | middle
    crop_seconds: float = 2.0  # audio crop; shorter clips are loop-padded
    # clip: whole clips buffered, a fresh crop per use | window: the buffer holds one seeded window of
    # buffer_window_seconds per sample and epoch, a fresh crop inside it per use | crop: the window is
    # the crop, the same crop for every use in an epoch (memory vs crop variety: docs/LOADER.md,
    # "Compact audio")
    buffer_audio: str = "clip"
    buffer_window_seconds: float | None = None  # buffer_audio: window; None: DEFAULT_WINDOW_FACTOR x crop_seconds
    # stream: the reader streams read every member and the buffer holds the face and audio bytes |
    # workers: the streams read headers and json only, the buffer holds where the members lie, and
    # the decode workers read them from the shards (docs/LOADER.md, "Member reads")
    member_reads: str = "workers"
    log_mel: dict[str, Any] = field(default_factory=dict)  # LogMel kwargs (n_mels, hop_length, ...)
    face_decoder: str = "auto"  # auto (DALI mixed on CUDA, else PIL) | pil | dali
    decode_workers: str = "auto"  # auto (processes with PIL, threads with DALI) | processes | threads
    seed: int = 0
    strict: bool = False  # raise on bad data instead of skipping and counting it
    steps_per_epoch: int | None = None  # None: derived from sample counts (see docs/LOADER.md)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | LoaderConfig) -> LoaderConfig:
        if isinstance(cfg, LoaderConfig):
            return cfg
        if not isinstance(cfg, dict):
            raise ValueError(f"data config must be a dict, got {type(cfg).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown data config key(s) {unknown}; allowed keys: {sorted(known)}")
        out = cls(**cfg)
        out.validate()
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def window_seconds(self) -> float | None:
        """Audio seconds the buffer keeps per sample: the window (`window`), the crop (`crop`), or
        None for whole clips (`clip`)."""
        if self.buffer_audio == "clip":
            return None
        if self.buffer_audio == "crop":
            return float(self.crop_seconds)
        if self.buffer_window_seconds is not None:
            return float(self.buffer_window_seconds)
        return DEFAULT_WINDOW_FACTOR * self.crop_seconds

    def validate(self) -> None:
        if isinstance(self.shards, str):
            self.shards = [self.shards]
        if not self.shards or not all(isinstance(s, str) and s for s in self.shards):
            raise ValueError("data.shards must name at least one shard-set folder (<out>/<dataset>/<split>)")
        _choice("direction", self.direction, DIRECTIONS)
        _choice("positive", self.positive, POSITIVES)
        _choice("frame", self.frame, FRAMES)
        _choice("face_decoder", self.face_decoder, FACE_DECODERS)
        _choice("decode_workers", self.decode_workers, DECODE_WORKERS)
        _choice("buffer_audio", self.buffer_audio, BUFFER_AUDIO)
        _choice("member_reads", self.member_reads, MEMBER_READS)
        _int("k", self.k, 1, 10)
        _int("batch_size", self.batch_size, 1)
        _int("buffer_size", self.buffer_size, 2)
        _int("num_workers", self.num_workers, 1)
        _int("prefetch", self.prefetch, 0)
        _int("seed", self.seed, 0)
        if self.read_streams is not None:
            _int("read_streams", self.read_streams, 1)
        if self.face_size is not None:
            _int("face_size", self.face_size, 8)
        if self.steps_per_epoch is not None:
            _int("steps_per_epoch", self.steps_per_epoch, 1)
        if not isinstance(self.crop_seconds, (int, float)) or not 0.05 <= self.crop_seconds <= 60:
            raise ValueError(f"data.crop_seconds must be a number in [0.05, 60], got {self.crop_seconds!r}")
        if self.buffer_window_seconds is not None:
            w = self.buffer_window_seconds
            if self.buffer_audio != "window":
                raise ValueError(
                    f"data.buffer_window_seconds only applies with data.buffer_audio: window "
                    f"(buffer_audio is {self.buffer_audio!r}); remove it or set buffer_audio: window"
                )
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not self.crop_seconds <= w <= 600:
                raise ValueError(
                    f"data.buffer_window_seconds must be a number in [crop_seconds ({self.crop_seconds}), 600], "
                    f"got {w!r}"
                )
        for name in ("gender_matched_negatives", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"data.{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.log_mel, dict) or set(self.log_mel) - _LOGMEL_KEYS:
            raise ValueError(f"data.log_mel must be a dict with keys from {sorted(_LOGMEL_KEYS)}, got {self.log_mel!r}")
        needed = max(2 * self.batch_size, self.k + 1)
        if self.buffer_size < needed:
            raise ValueError(
                f"data.buffer_size ({self.buffer_size}) must hold at least one batch's samples "
                f"({needed} = max(2 x batch_size, k + 1)); several batches' worth mixes better"
            )


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"data.{name} must be one of {list(allowed)}, got {value!r}")


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"data.{name} must be an integer {rng}, got {value!r}")
