"""Deterministic evaluation inputs: which face frame and which audio span a trial item uses.

Why fixed choices: training draws random frames and random crops; evaluation must not, or the
same checkpoint on the same trial file would give different numbers on every run.

* face: the middle frame (`F // 2`) of the clip's `F` stored crops, then
  `shards.features.faces_to_tensor` at the model's input size (same normalisation as training);
* voice: a centred window of `crop_seconds` (the training crop length), loop-padded from the
  start when the clip is shorter (BIANet §4: "shorter audio samples are loop-padded"), then
  `shards.features.LogMel`.

Each item is prepared on its own (never as part of a batch) and cached, so an item's tensor is
bit-identical whatever batch it later lands in: the first half of batch-size independence.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import torch

from shards.config import LoaderConfig
from shards.features import LogMel, faces_to_tensor

_LOADER_DEFAULTS = {f.name: f.default for f in fields(LoaderConfig)}


@dataclass(frozen=True)
class EvalInputs:
    """Preprocessing settings for evaluation, normally read from the checkpoint's data_config."""

    audio_seconds: float = _LOADER_DEFAULTS["crop_seconds"]
    face_size: int | None = None  # None: keep the store's crop size
    sample_rate: int = 16000
    logmel: tuple = ()  # LogMel keyword overrides as (name, value) pairs

    @classmethod
    def from_data_config(
        cls, data_config: dict | None, audio_seconds: float | None = None, face_size: int | None = None
    ) -> EvalInputs:
        """The training loader's settings (shards.config.LoaderConfig keys `crop_seconds`,
        `face_size`, `log_mel`; its defaults where the checkpoint does not say), CLI overrides."""
        dc = dict(data_config or {})
        if audio_seconds is None:
            audio_seconds = float(dc.get("crop_seconds") or _LOADER_DEFAULTS["crop_seconds"])
        if face_size is None and dc.get("face_size"):
            face_size = int(dc["face_size"])
        if audio_seconds <= 0:
            raise ValueError(f"audio_seconds must be > 0, got {audio_seconds}")
        logmel = tuple(sorted(dict(dc.get("log_mel") or {}).items()))
        return cls(float(audio_seconds), face_size, 16000, logmel)


def centre_crop_loop(wave: np.ndarray, length: int) -> np.ndarray:
    """Centred window of `length` samples; a shorter clip is repeated from its start to fill it."""
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"audio must be a non-empty 1-D array, got shape {wave.shape}")
    if wave.size >= length:
        start = (wave.size - length) // 2
        return wave[start : start + length]
    return np.resize(wave, length)  # np.resize repeats the array cyclically


def middle_frame(faces: np.ndarray) -> np.ndarray:
    """The middle crop `[S, S, 3]` of a clip's `[F, S, S, 3]` crops."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[0] == 0:
        raise ValueError(f"faces must be [F>0, S, S, 3], got shape {faces.shape}")
    return faces[faces.shape[0] // 2]


class ItemLoader:
    """Model-ready tensors for store keys, one item at a time, with a bounded LRU cache."""

    def __init__(self, store, inputs: EvalInputs, cache_items: int = 4096):
        if store.sample_rate != inputs.sample_rate:
            raise ValueError(f"store sample rate {store.sample_rate} != model's {inputs.sample_rate}")
        self.store, self.inputs = store, inputs
        self.crop = int(round(inputs.audio_seconds * inputs.sample_rate))
        self.logmel = LogMel(sample_rate=inputs.sample_rate, **dict(inputs.logmel))
        self._cache: OrderedDict = OrderedDict()
        self._cache_items = cache_items

    def _cached(self, kind: str, key: str, make):
        ck = (kind, key)
        if ck in self._cache:
            self._cache.move_to_end(ck)
            return self._cache[ck]
        value = make()
        self._cache[ck] = value
        if len(self._cache) > self._cache_items:
            self._cache.popitem(last=False)
        return value

    def face(self, key: str) -> torch.Tensor:
        """float32 `[3, H, W]` of the item's middle face crop.

        The cache keeps the uint8 crop (4x smaller than the float tensor; 150 KB at 224 px) and
        the conversion runs per call, on that one crop, so the result is the same every time.
        """
        crop = self._cached(
            "face",
            key,
            lambda: torch.from_numpy(np.ascontiguousarray(middle_frame(self.store.faces(self.store.index_of(key))))),
        )
        return faces_to_tensor(crop[None], self.inputs.face_size)[0]

    @torch.no_grad()
    def voice(self, key: str) -> torch.Tensor:
        """float32 `[1, n_mels, T]` log-mel of the item's centred, loop-padded audio window."""
        return self._cached("voice", key, lambda: self.voice_from_wave(self.store.audio(self.store.index_of(key))))

    @torch.no_grad()
    def voice_from_wave(self, wave: np.ndarray) -> torch.Tensor:
        """float32 `[1, n_mels, T]` log-mel of an int16 waveform's centred, loop-padded window
        (also for audio from outside the store: launch.retrieve's query files)."""
        wave = centre_crop_loop(wave, self.crop)
        return self.logmel(torch.from_numpy(wave.astype(np.float32) / 32768.0)[None])[0]

    def faces(self, keys) -> torch.Tensor:
        return torch.stack([self.face(k) for k in keys])

    def voices(self, keys) -> torch.Tensor:
        return torch.stack([self.voice(k) for k in keys])
