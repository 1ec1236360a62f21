"""Decoding one planned batch into tensors: a pure function of the plan, run in worker processes.

Why processes: on the 2-core box the thread version used ~1 core. Per batch, LogMel (torch STFT +
matmul, ~35% of the CPU), the FLAC crops (~38%) and the JPEGs (~12%) are many small calls
(~0.2-0.5 ms each) whose Python glue holds the GIL, and the single assembler thread made each
batch's feature step wait for its decodes and vice versa. `benchmarks/bench_loader.py` and
docs/LOADER.md ("Decode workers") have the measurements.

A worker receives a *lean* plan: by default (`data.member_reads: workers`) the items' locations
in their shards, which it reads itself (`face_bytes`, `voice_source`); with `stream` only the
encoded bytes it decodes (face JPEGs of face items, the crop window of WAV voice items, whole
FLACs), normally as offsets into a shared-memory slot (`pack_into_slot`, `shards/shm.py`). It
leaves numpy arrays in that slot: log-mel features, and faces normalised here for a CPU loader
(`AssembleSpec.float_faces`: off the consuming process, which is serial) or uint8 for a CUDA
loader (4x smaller; `finish_batch` normalises them on the GPU).
`finish_batch` in the consuming process builds the index tensors. Bad items are repaired here
(`repair_plan`) and returned as `(reason, message)` pairs; the loader counts them (or raises with
`strict`) in the consuming thread, in batch order, so counts and messages stay deterministic.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shards.decode import decode_face, decode_voice_crop
from shards.device_stage import to_device
from shards.features import LogMel, faces_to_tensor
from shards.format import MemberSpan, ShardFormatError, read_member
from shards.shm import ShmArray, SlotRef, attach, put_array, take_array
from shards.stream import BadSample, Sample, cut_audio_window
from shards.tuples import BatchPlan, repair_plan
from shards.wav import crop_pcm16_wav

__all__ = [
    "AssembleSpec",
    "Assembled",
    "assemble_batch",
    "assemble_in_slot",
    "face_bytes",
    "finish_batch",
    "lean_plan",
    "log_mel_for",
    "pack_into_slot",
    "slot_bytes",
    "take_from_slot",
    "voice_source",
    "worker_init",
]


@dataclass(frozen=True)
class AssembleSpec:
    """Everything besides the plan that decoding a batch depends on (small, sent with each job)."""

    crop_samples: int
    sample_rate: int
    face_size: int
    k: int
    gender_matched: bool
    log_mel: tuple[tuple[str, Any], ...]  # LogMel kwargs as sorted items (hashable: cache key)
    # a decode worker normalises faces itself (float32, `faces_to_tensor`) instead of leaving
    # uint8 pixels for `finish_batch`: set when the loader's device is the CPU, where the
    # consuming process would otherwise do it serially (~9 ms CPU per 100 faces of 112 px with
    # one torch thread, ~34 ms with two on a busy 2-core box); on CUDA the uint8 pixels go to the
    # GPU (4x fewer bytes to copy) and are normalised there
    float_faces: bool = False
    # samples read by reference (`data.member_reads: workers`): the audio window to cut when the
    # audio member is read (`buffer_audio: window` / `crop`), as `SampleParser` cuts bytes it holds
    window_samples: int | None = None


@dataclass
class Assembled:
    """A decoded batch (None when every tuple lost an item) plus what went wrong on the way."""

    batch: dict[str, Any] | None
    skips: list[tuple[str, str]]
    dropped_tuples: int
    slot_bytes_needed: int = 0  # set by `assemble_in_slot`: where its arrays ended in the slot
    worker_pid: int = dataclasses.field(default_factory=os.getpid)  # which process decoded it
    ready: Any = None  # thread mode on CUDA: event after the batch's device work (DeviceStage.mark)


_LOG_MEL_CACHE: dict[tuple, LogMel] = {}

# batch key set by a worker whose float faces are an NHWC array (the channels-last memory of the
# NCHW tensor); `finish_batch` turns them back into the NCHW tensor and drops the key
FACES_NHWC = "_faces_nhwc"


def log_mel_for(spec: AssembleSpec, device: torch.device) -> LogMel:
    """The spec's `LogMel` on `device`, built once per process: the loader builds it at start-up
    (so bad `data.log_mel` values fail there), each decode worker on its first batch."""
    key = (spec.sample_rate, spec.log_mel, str(device))
    if key not in _LOG_MEL_CACHE:
        _LOG_MEL_CACHE[key] = LogMel(sample_rate=spec.sample_rate, **dict(spec.log_mel)).to(device)
    return _LOG_MEL_CACHE[key]


def worker_init(owner_pid: int | None = None, poll_seconds: float = 1.0) -> None:
    """Decode worker start: one intra-op thread, since the workers themselves fill the cores.

    With `owner_pid`, a daemon thread ends this worker once the loader's process is gone. Why: a
    training run killed with SIGKILL (OOM killer, preemption, `kill -9`) runs no cleanup, and a
    pool worker never sees EOF on its task queue (each worker holds both ends of it), so it would
    wait forever; every worker also holds the fork server's "alive" pipe, so the fork server would
    stay too (about 1 GB for two workers). When the workers exit, the fork server follows.
    """
    torch.set_num_threads(1)
    if owner_pid is not None:
        threading.Thread(
            target=_exit_when_gone, args=(owner_pid, poll_seconds), daemon=True, name="owner-watchdog"
        ).start()


def _owner_alive(pid: int) -> bool:
    """False once `pid` has exited. A killed process stays a zombie until its parent reaps it, and
    a parent that first drains the child's output pipes (`subprocess.run`, many launchers) would
    wait on our inherited pipes forever: so on Linux a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)  # signal 0 only checks existence
        except ProcessLookupError:
            return False
        except PermissionError:  # exists but is someone else's: our owner died and the pid was reused
            return False
        return True


def _exit_when_gone(owner_pid: int, poll_seconds: float) -> None:
    while _owner_alive(owner_pid):
        time.sleep(poll_seconds)
    os._exit(0)


def _with_bytes(s: Sample, face: bytes, audio: bytes) -> Sample:
    """`s` carrying other encoded bytes. Direct construction: `dataclasses.replace` costs ~4x as
    much, and the loader does this for every item of every batch."""
    return Sample(
        s.key,
        s.identity,
        s.video,
        s.clip,
        s.gender,
        face,
        audio,
        s.loc,
        s.seq,
        s.audio_start,
        s.audio_span,
        s.crop_fraction,
        s.refs,
        s.window_fraction,
    )


def face_bytes(s: Sample) -> bytes:
    """The sample's face JPEG: held, or read from its shard (`member_reads: workers`)."""
    if s.refs is None:
        return s.face
    return _read(s.key, s.refs.path, s.refs.face, "face frame")


def voice_source(s: Sample, window_samples: int | None) -> tuple[bytes, int | None, int | None]:
    """`(audio, window start, window span)` as `decode_voice_crop` takes them: held, or read from
    the shard and cut to the sample's window exactly as `SampleParser` would have cut it."""
    if s.refs is None:
        return s.audio, s.audio_start, s.audio_span
    audio = _read(s.key, s.refs.path, s.refs.audio, "audio member")
    if s.window_fraction is None or window_samples is None:
        return audio, None, None
    audio, start = cut_audio_window(audio, window_samples, s.window_fraction)
    return audio, start, None if start is None else window_samples


def _read(key: str, path: str, span: MemberSpan, what: str) -> bytes:
    try:
        return read_member(path, span)
    except (OSError, ShardFormatError) as exc:
        raise BadSample(
            "unreadable_member",
            f"sample {key!r}: its {what} cannot be read back from {path} ({exc}); "
            "the shard changed or went away after the stream read it",
        ) from exc


def _face_item(s: Sample) -> np.ndarray:
    return decode_face(face_bytes(s), s.key)


def _voice_item(s: Sample, spec: AssembleSpec, fraction: float) -> np.ndarray:
    audio, start, span = voice_source(s, spec.window_samples)
    return decode_voice_crop(audio, spec.crop_samples, fraction, spec.sample_rate, s.key, start, span)


def lean_plan(plan: BatchPlan, crop_samples: int) -> BatchPlan:
    """A copy of `plan` carrying only the bytes a worker decodes: for a face item its JPEG, for a
    voice item its audio, and for a PCM WAV voice only its crop (`crop_pcm16_wav`, the same samples
    the worker would cut, from the whole clip or from the buffered window). With 2 s crops of ~8 s
    clips that sends a quarter of the audio bytes; FLAC (or a WAV we cannot parse) goes whole
    (a FLAC window: only its frames) and the worker decodes or rejects it."""
    face_ids = {id(s) for s in plan.faces}
    crop_of = {id(s): u for s, u in zip(plan.voices, crop_fractions(plan))}
    lean: dict[int, Sample] = {}

    def slim(s: Sample) -> Sample:
        if id(s) not in lean:
            face = s.face if id(s) in face_ids else b""
            if s.refs is not None:
                lean[id(s)] = s  # holds no bytes: the worker reads what it decodes
            elif id(s) not in crop_of:
                lean[id(s)] = _with_bytes(s, face, b"")
            elif s.audio_start is not None and (s.audio_span is None or s.audio_span <= crop_samples):
                lean[id(s)] = _with_bytes(s, face, s.audio)  # the buffered window is the crop: as it is
            elif s.audio_start is not None and s.audio[:4] != b"RIFF":
                lean[id(s)] = _with_bytes(s, face, s.audio)  # a FLAC window: the worker decodes it
            else:
                # a WAV clip, or a WAV window (which starts at its first sample and is the window):
                # cut the crop here, so the worker gets exactly the samples it would take
                cut = crop_pcm16_wav(s.audio, crop_samples, crop_of[id(s)])
                lean[id(s)] = _with_bytes(s, face, s.audio) if cut is None else _as_clip(s, face, cut)
        return lean[id(s)]

    return dataclasses.replace(plan, faces=[slim(s) for s in plan.faces], voices=[slim(s) for s in plan.voices])


def _align(n: int) -> int:
    return (n + 63) // 64 * 64


def pack_into_slot(plan: BatchPlan, buf: memoryview) -> tuple[BatchPlan, list, list, int]:
    """Main side: copy a lean plan's item bytes into a slot. Returns the plan without bytes, the
    `(offset, size)` of each face item's JPEG and each voice item's audio, and where the worker
    may start writing its arrays."""
    pos, spans = 0, {}

    def put(data: bytes) -> tuple[int, int]:
        nonlocal pos
        key = id(data)
        if key not in spans:  # the same bytes object twice (a sample used as face and voice) goes once
            buf[pos : pos + len(data)] = data
            spans[key] = (pos, len(data))
            pos += len(data)
        return spans[key]

    face_spans = [put(s.face) for s in plan.faces]
    voice_spans = [put(s.audio) for s in plan.voices]
    bare = {id(s): _with_bytes(s, b"", b"") for s in [*plan.faces, *plan.voices]}
    bare_plan = dataclasses.replace(
        plan, faces=[bare[id(s)] for s in plan.faces], voices=[bare[id(s)] for s in plan.voices]
    )
    return bare_plan, face_spans, voice_spans, _align(pos)


def slot_bytes(plan: BatchPlan, out_bytes: int) -> int:
    """Slot size a lean plan needs: its item bytes plus `out_bytes` for the decoded arrays."""
    unique = {id(s.face): len(s.face) for s in plan.faces}
    unique.update({id(s.audio): len(s.audio) for s in plan.voices})
    return _align(sum(unique.values())) + out_bytes + 128


def assemble_in_slot(
    plan: BatchPlan, spec: AssembleSpec, slot: SlotRef, face_spans: list, voice_spans: list, out_offset: int
) -> Assembled:
    """Worker side of `pack_into_slot`: decode the items from the slot and leave the face and
    log-mel arrays in it (`ShmArray` in the batch); an array that does not fit goes through the
    pipe as before, and `slot_bytes_needed` tells the loader to size slots up."""
    buf = attach(slot)
    plan = dataclasses.replace(
        plan,
        faces=[_with_bytes(s, bytes(buf[o : o + n]), b"") for s, (o, n) in zip(plan.faces, face_spans)],
        voices=[_with_bytes(s, b"", bytes(buf[o : o + n])) for s, (o, n) in zip(plan.voices, voice_spans)],
    )
    done = assemble_batch(plan, spec)
    if done.batch is not None:
        pos = out_offset
        for name in ("faces", "voices"):
            arr = done.batch[name]
            placed = put_array(buf, pos, arr)
            if placed is not None:
                done.batch[name] = placed
            pos = _align(pos + arr.nbytes)
        done.slot_bytes_needed = pos
    return done


def take_from_slot(batch: dict[str, Any], buf: memoryview) -> dict[str, Any]:
    """Main side: the arrays a worker left in the slot, copied out so the slot can be reused
    (uint8 faces stay views: `finish_batch` turns them into new float tensors right away; float
    arrays are copied in their memory order, one memcpy each)."""
    out = dict(batch)
    for name in ("faces", "voices"):
        ref = batch[name]
        if isinstance(ref, ShmArray):
            view = take_array(buf, ref)
            out[name] = view if view.dtype == np.uint8 else view.copy()
    return out


def _as_clip(s: Sample, face: bytes, audio: bytes) -> Sample:
    """`s` carrying `audio` as a whole clip of its own (no window): a crop cut by `lean_plan`
    (never a sample read by reference: `lean_plan` only cuts bytes it holds)."""
    return Sample(s.key, s.identity, s.video, s.clip, s.gender, face, audio, s.loc, s.seq, None, None, s.crop_fraction)


def crop_fractions(plan: BatchPlan) -> list[float]:
    """Where each voice item's crop goes (in its clip, or in its buffered window): the sample's
    own fixed placement (`buffer_audio: crop`) or the plan's seeded draw, a new one per use."""
    return [u if s.crop_fraction is None else s.crop_fraction for s, u in zip(plan.voices, plan.voice_crop)]


def _try(fn: Callable, *args):
    try:
        return fn(*args)
    except BadSample as exc:
        return exc


def assemble_batch(
    plan: BatchPlan,
    spec: AssembleSpec,
    *,
    faces: list | None = None,
    device: torch.device | None = None,
    item_map: Callable = map,
) -> Assembled:
    """Decode the plan's unique items once each, drop what failed, build the §3 batch.

    `faces` may hold pixels decoded elsewhere (DALI); `item_map` runs the per-item decodes (a
    thread pool's `map` in thread mode, plain `map` inside a worker process). Pure: the result
    depends only on the plan and the spec, never on timing.
    """
    n = len(plan.voices)
    voice_it = item_map(_try, [_voice_item] * n, plan.voices, [spec] * n, crop_fractions(plan))
    face_it = faces if faces is not None else item_map(_try, [_face_item] * len(plan.faces), plan.faces)
    voice_res, face_res = list(voice_it), list(face_it)  # a pool's map has submitted both already
    bad_faces = {i: r for i, r in enumerate(face_res) if isinstance(r, BadSample)}
    bad_voices = {i: r for i, r in enumerate(voice_res) if isinstance(r, BadSample)}
    skips = [(e.reason, str(e)) for e in [*bad_faces.values(), *bad_voices.values()]]
    dropped = 0
    if bad_faces or bad_voices:
        before = len(plan.label)
        repaired = repair_plan(plan, set(bad_faces), set(bad_voices), spec.k, spec.gender_matched)
        dropped = before - (0 if repaired is None else len(repaired.label))
        if repaired is None:
            return Assembled(None, skips, dropped)
        face_res = [face_res[old] for old in repaired.face_rows]
        voice_res = [voice_res[old] for old in repaired.voice_rows]
        plan = repaired
    wave = torch.from_numpy(np.stack(voice_res))
    if device is not None:  # thread mode: features on the loader's device
        with torch.no_grad():
            voices = log_mel_for(spec, device)(to_device(wave, device))
        return Assembled(collate(plan, normalized_faces(face_res, spec.face_size, device), voices), skips, dropped)
    # in a worker process: arrays go back through a shared-memory slot (or the pipe). For a CUDA
    # loader same-size crops stay uint8 (4x smaller to copy to the GPU, normalised there by
    # `finish_batch`); for a CPU loader (`float_faces`) the worker normalises them, off the
    # consuming process's serial path (same function, same values)
    with torch.no_grad():
        voices = log_mel_for(spec, torch.device("cpu"))(wave).numpy()
    if not spec.float_faces and len({p.shape for p in face_res}) == 1:
        return Assembled(collate(plan, np.stack(face_res), voices), skips, dropped)
    faces = normalized_faces(face_res, spec.face_size, torch.device("cpu"))
    batch = collate(plan, faces.numpy(), voices)
    if faces.is_contiguous(memory_format=torch.channels_last):
        # `faces_to_tensor` leaves the NCHW result in channels-last memory: send that memory as it
        # is (an NHWC array, copied once into the slot and once out of it) and let `finish_batch`
        # permute it back, instead of a strided copy to NCHW here
        batch["faces"], batch[FACES_NHWC] = faces.permute(0, 2, 3, 1).numpy(), True
    return Assembled(batch, skips, dropped)


def normalized_faces(face_px: list, face_size: int, device: torch.device) -> torch.Tensor:
    """Decoded crops (DALI tensors or PIL arrays) -> `faces_to_tensor` float32 `[N, 3, S, S]` on `device`."""
    if isinstance(face_px[0], torch.Tensor):
        return faces_to_tensor(torch.stack(face_px).to(device, non_blocking=True), face_size)
    if len({p.shape for p in face_px}) == 1:
        return faces_to_tensor(to_device(torch.from_numpy(np.stack(face_px)), device), face_size)
    # mixed crop sizes: resize one by one to the configured size (np.array: PIL's arrays are
    # read-only, which torch.from_numpy warns about)
    return torch.cat([faces_to_tensor(torch.from_numpy(np.array(p[None])).to(device), face_size) for p in face_px])


def collate(plan: BatchPlan, faces, voices) -> dict[str, Any]:
    """The indexed batch of ARCHITECTURE.md §3 around already stacked `faces` and `voices` (the
    index fields stay lists until `finish_batch`)."""
    anchors, cands = plan.anchors, plan.candidates
    a_idx, c_idx = plan.anchor_index, plan.candidate_index
    return {
        "direction": plan.direction,
        "faces": faces,
        "voices": voices,
        "anchor_index": list(a_idx),  # lists until `finish_batch`: each tensor sent from a worker
        "candidate_index": [list(row) for row in c_idx],  # costs a shared-memory segment (~1 ms)
        "label": list(plan.label),
        "anchor_identity": [anchors[i].identity for i in a_idx],
        "candidate_identity": [[cands[j].identity for j in row] for row in c_idx],
        "anchor_key": [anchors[i].key for i in a_idx],
        "candidate_key": [[cands[j].key for j in row] for row in c_idx],
        "anchor_gender": [anchors[i].gender for i in a_idx],
        "candidate_gender": [[cands[j].gender for j in row] for row in c_idx],
    }


def finish_batch(batch: dict[str, Any], device: torch.device, face_size: int) -> dict[str, Any]:
    """In the consuming process: uint8 face pixels are normalised (`faces_to_tensor`), index lists
    become int64 tensors, every tensor goes to `device` (to CUDA: from pinned memory, without
    blocking the host; `shards/device_stage.py`)."""
    faces = batch["faces"]
    if batch.get(FACES_NHWC):  # float faces a worker sent in their channels-last memory
        batch = {k: v for k, v in batch.items() if k != FACES_NHWC}
        batch["faces"] = to_device(torch.from_numpy(faces).permute(0, 3, 1, 2), device)
    elif isinstance(faces, np.ndarray) and faces.dtype == np.uint8:
        batch = {**batch, "faces": faces_to_tensor(to_device(torch.from_numpy(faces), device), face_size)}
    out = {
        k: to_device(torch.from_numpy(v), device)
        if isinstance(v, np.ndarray)
        else to_device(v, device)
        if isinstance(v, torch.Tensor)
        else v
        for k, v in batch.items()
    }
    rows = batch["candidate_index"]
    out["anchor_index"] = to_device(torch.tensor(batch["anchor_index"], dtype=torch.int64), device)
    out["candidate_index"] = to_device(torch.tensor(rows, dtype=torch.int64).reshape(len(rows), -1), device)
    out["label"] = to_device(torch.tensor(batch["label"], dtype=torch.int64), device)
    return out
