"""Sequential reading of a stream's shard pieces, with a resumable cursor and counted skips.

A stream owns a list of pieces for the epoch (see `partition.py`) and reads them in order with the
lean tar parser. Its whole state is `(pass, piece, byte offset, samples read in piece)`: resuming
is one `seek`, never a replay. When the stream runs out it starts its pieces again (`pass` + 1):
ranks never run dry, so every rank yields exactly `steps_per_epoch` batches (the DDP-hang fix
of wespeaker/SpeechBrain), and `fresh` counts first-pass reads to report epoch coverage.

Damage found while reading is skipped and counted (or raised when `strict`): a truncated or
corrupt tar ends that piece, a missing shard skips it, a sample missing members or with bad JSON
is dropped.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from shards.flac import crop_flac_window
from shards.format import (
    AUDIO_MEMBERS,
    CorruptShardError,
    MemberSpan,
    ShardFormatError,
    TruncatedShardError,
    audio_member,
    iter_tar_sample_refs,
    iter_tar_sample_spans,
)
from shards.partition import Piece, ShardCatalog, sample_offset
from shards.wav import crop_pcm16_wav

__all__ = [
    "Sample",
    "MemberRefs",
    "cut_audio_window",
    "BadSample",
    "unsafe_key_reason",
    "ShardReadError",
    "SkipLog",
    "SampleParser",
    "PieceStream",
]


class BadSample(Exception):
    """A sample that cannot be used; `reason` is the counter name."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class ShardReadError(RuntimeError):
    """Raised instead of skipping when the loader runs with `strict: true`."""


class MemberRefs(NamedTuple):
    """Where a buffered sample's face frame and audio member lie (`data.member_reads: workers`):
    the decode worker reads them from `path` when a batch uses the sample."""

    path: str
    face: MemberSpan
    audio: MemberSpan


@dataclass
class Sample:
    """One buffered clip: what a tuple can use of it (one face frame + the audio member, `wav` PCM
    or `flac`, see `shards.format.AUDIO_MEMBERS`), as bytes or, read by reference, as where they
    lie in the shard (`refs`)."""

    key: str
    identity: str
    video: str
    clip: str
    gender: str | None
    face: bytes
    audio: bytes
    loc: tuple[int, int, int]  # (shard index, byte offset, byte size): enough to re-read it
    seq: int = -1  # insertion order in the buffer
    # set when `audio` is already cut to the sample's seeded window (SampleParser,
    # `buffer_audio: window` or `crop`): where the window starts in `audio` and its nominal length
    # (a shorter clip's window ends with the clip); each use places its crop inside it. None:
    # `audio` is the whole clip and the crop may go anywhere in it
    audio_start: int | None = None
    audio_span: int | None = None
    crop_fraction: float | None = None  # the sample's own fixed crop placement (buffer_audio: crop)
    # `data.member_reads: workers`: `face` and `audio` stay empty, the buffer holds where they lie,
    # and whoever decodes reads them (`shards.assemble.face_bytes` / `voice_source`), cutting the audio to the
    # window starting at `window_fraction` (`buffer_audio: window` / `crop`) exactly as
    # `SampleParser` cuts bytes it holds
    refs: MemberRefs | None = None
    window_fraction: float | None = None


class SkipLog:
    """Skip counters plus the first few messages, reported by the loader and logged by training."""

    def __init__(self, strict: bool, keep: int = 20):
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.messages: list[str] = []
        self._keep = keep

    def skip(self, reason: str, message: str) -> None:
        if self.strict:
            raise ShardReadError(f"{message} (data.strict is true; set it to false to skip and count bad data)")
        self.counts[reason] += 1
        if len(self.messages) < self._keep:
            self.messages.append(f"{reason}: {message}")


def unsafe_key_reason(key: str) -> str | None:
    """Why a sample key taken from tar member names must not be used, or None.

    The ingest writes flat keys (`shards.format.make_key`: `[A-Za-z0-9_-]` only). A key that is an
    absolute path or climbs with `..` comes from a hand-made or hostile tar; the loader never
    writes members to disk, but such a key must not become a sample identity either (it is
    counted as `bad_member_name`, like any other bad member)."""
    if key.startswith(("/", "\\")):
        return "are absolute paths"
    if any(part == ".." for part in key.replace("\\", "/").split("/")):
        return "climb out of the archive with '..'"
    return None


class SampleParser:
    """Turn raw tar members into a `Sample`, choosing the face frame deterministically.

    The frame is a function of `(seed, epoch, key)` so a sample re-read on resume gets the same
    frame without storing it, and only that frame's bytes are buffered (F times less memory).

    With `window_samples` (the loader's `buffer_audio: window` or `crop`), the audio is cut to a
    window of that many samples here, when it enters the buffer, at a start that is also a
    function of `(seed, epoch, key)`: a PCM WAV to exactly the window, a FLAC with a per-frame seek
    table to the frames covering it (`shards.flac`). The buffer then holds ~a window instead of a
    whole clip (docs/LOADER.md, "Compact audio"); FLACs without a seek table stay whole. Each use
    of the sample draws its crop inside the window (`Sample.audio_start` / `audio_span`) from the
    batch plan's RNG, unless `fixed_crop` (`buffer_audio: crop`, window = crop): then every use in
    the epoch gets the same crop, also for a FLAC kept whole (`Sample.crop_fraction`).

    Members read by reference (`iter_tar_sample_refs`, `data.member_reads: workers`) arrive as
    `MemberSpan`s: the sample then holds its shard's path and the two spans (`Sample.refs`) and
    the window's start fraction, and the window is cut when the decode worker reads the audio.
    """

    def __init__(
        self,
        num_faces: int,
        frame: str,
        seed: int,
        genders: dict[str, str | None] | None = None,
        window_samples: int | None = None,
        fixed_crop: bool = False,
        shard_paths: list[str] | None = None,
    ):
        if window_samples is not None and window_samples < 1:
            raise ValueError(f"window_samples must be >= 1, got {window_samples}")
        self.num_faces, self.frame, self.seed = num_faces, frame, seed
        self.genders = genders or {}  # index.json's identity genders, used when a json lacks one
        self.window_samples = window_samples
        self.fixed_crop = fixed_crop
        self.shard_paths = shard_paths  # catalog order: samples read by reference name their shard's path
        self.epoch = 0

    def frame_index(self, key: str) -> int:
        if self.frame == "first":
            return 0
        if self.frame == "middle":
            return self.num_faces // 2
        return zlib.crc32(f"{self.seed}:{self.epoch}:{key}".encode()) % self.num_faces

    def crop_fraction(self, key: str) -> float:
        """Where the sample's audio window starts this epoch, as a fraction of the free range."""
        return zlib.crc32(f"{self.seed}:{self.epoch}:{key}:crop".encode()) / 2**32

    def __call__(self, key: str, members: dict[str, Any], loc: tuple[int, int, int]) -> Sample:
        where = f"sample {key!r} (shard #{loc[0]}, byte {loc[1]})"
        unsafe = unsafe_key_reason(key)
        if unsafe:
            raise BadSample("bad_member_name", f"{where}: member names {unsafe}; not a sample an ingest writes")
        if "json" not in members:
            raise BadSample("missing_member", f"{where} has no json member")
        try:
            meta = json.loads(members["json"])
            identity, video, clip = str(meta["identity"]), str(meta["video"]), str(meta["clip"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadSample("bad_json", f"{where}: unreadable json ({exc!r})") from exc
        frame = f"f{self.frame_index(key)}.jpg"
        if not members.get(frame):
            raise BadSample("missing_member", f"{where} has no (or an empty) {frame} member")
        audio = audio_member(members)
        if audio is None:
            raise BadSample(
                "missing_member", f"{where} has no (or an empty) audio member ({' or '.join(AUDIO_MEMBERS)})"
            )
        gender = meta.get("gender") or self.genders.get(identity)
        face = members[frame]
        where_window = fixed = None
        if self.window_samples is not None:
            where_window = self.crop_fraction(key)
            fixed = where_window if self.fixed_crop else None
        if isinstance(face, MemberSpan) or isinstance(audio, MemberSpan):  # read by reference
            if self.shard_paths is None:
                raise ValueError("SampleParser needs shard_paths to parse a sample read by reference")
            refs = MemberRefs(self.shard_paths[loc[0]], face, audio)
            return Sample(key, identity, video, clip, gender, b"", b"", loc, crop_fraction=fixed, refs=refs,
                          window_fraction=where_window)  # fmt: skip
        start = span = None
        if where_window is not None:
            audio, start = cut_audio_window(audio, self.window_samples, where_window)
            span = None if start is None else self.window_samples
        return Sample(
            key,
            identity,
            video,
            clip,
            gender,
            face,
            audio,
            loc,
            audio_start=start,
            audio_span=span,
            crop_fraction=fixed,
        )


def cut_audio_window(audio: bytes, window_samples: int, fraction: float) -> tuple[bytes, int | None]:
    """`audio` cut to the window of `window_samples` at `fraction` of the free range and where the
    window starts in the result (it runs for `window_samples`, or to the end of a shorter clip),
    or unchanged with None when it cannot be cut without decoding (a FLAC without a seek table,
    an unknown format)."""
    if audio[:4] == b"RIFF":
        window = crop_pcm16_wav(audio, window_samples, fraction)
        return (window, 0) if window is not None else (audio, None)
    if audio[:4] == b"fLaC":
        cut = crop_flac_window(audio, window_samples, fraction)
        if cut is not None:
            return cut
    return audio, None


class PieceStream:
    """Reads the good samples of a list of pieces, cycling forever; see the module docstring."""

    def __init__(
        self,
        catalog: ShardCatalog,
        pieces: list[Piece],
        parse: Callable[..., Sample],
        log: SkipLog,
        wrap_pieces: list[Piece] | None = None,
        by_reference: bool = False,
    ):
        """`wrap_pieces` (an elastic resume, `shards/elastic.py`): the first pass reads `pieces` (the
        epoch's unread rest, possibly nothing), later passes cycle `wrap_pieces` (the stream's
        share of the whole epoch), so re-reads at the end of an epoch draw from as many
        identities as without the switch. `by_reference` (`data.member_reads: workers`): read
        only headers and json, hand the parser each other member's `MemberSpan`."""
        self._open = iter_tar_sample_refs if by_reference else iter_tar_sample_spans
        if not pieces and not wrap_pieces:
            raise ValueError("a stream needs at least one piece")
        self.catalog, self.parse, self.log = catalog, parse, log
        self._first, self._wrap = list(pieces), (list(wrap_pieces) if wrap_pieces else None)
        self.pass_no = 0 if pieces else 1
        self.piece_pos = 0
        self.offset: int | None = None
        self.read_in_piece = 0
        self.fresh = 0  # good samples read in the first pass
        self.good_in_pass = 0
        self._it: Iterator | None = None

    @property
    def pieces(self) -> list[Piece]:
        """The pieces of the current pass."""
        return self._first if self.pass_no == 0 or self._wrap is None else self._wrap

    @property
    def first_pass_done(self) -> bool:
        return self.pass_no > 0

    def state_dict(self) -> dict:
        return {
            "pass": self.pass_no,
            "piece": self.piece_pos,
            "offset": self.offset,
            "read_in_piece": self.read_in_piece,
            "fresh": self.fresh,
            "good_in_pass": self.good_in_pass,
        }

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.pass_no, self.piece_pos, self.offset = state["pass"], state["piece"], state["offset"]
        self.read_in_piece, self.fresh, self.good_in_pass = (
            state["read_in_piece"],
            state["fresh"],
            state["good_in_pass"],
        )

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None

    def _advance_piece(self) -> bool:
        """Move to the next piece; True when that started a new pass over the pieces."""
        self.close()
        self.piece_pos += 1
        self.offset, self.read_in_piece = None, 0
        if self.piece_pos == len(self.pieces):
            if self.good_in_pass == 0 and not (self.pass_no == 0 and self._wrap is not None):
                names = sorted({self.catalog.shards[p.shard].path.name for p in self.pieces})
                raise ShardReadError(
                    f"no readable sample in a full pass over shards {names}; "
                    f"skips so far: {dict(self.log.counts)} ({self.log.messages[:3]})"
                )
            self.pass_no += 1
            self.piece_pos = 0
            self.good_in_pass = 0
            return True
        return False

    def _check_shard_end(self, piece: Piece) -> None:
        """After a shard's last listed sample the tar must end: samples beyond what index.json
        lists are never read, so a shard that holds more (appended to, or an index from another
        run) is flagged as `extra_samples` (raised when strict) instead of silently ignored."""
        shard = self.catalog.shards[piece.shard]
        if self._it is None or piece.stop != shard.num_samples:
            return
        try:
            extra = next(self._it, None)
        except (ShardFormatError, OSError, UnicodeDecodeError):
            return  # damage after the listed samples: nothing listed is lost
        if extra is not None:
            self.log.skip(
                "extra_samples",
                f"{shard.path} holds more samples than the {shard.num_samples} "
                f"its index.json lists (next key {extra[0]!r} at byte {extra[2]}); "
                "they are not read: the shard and index.json do not belong "
                "together, re-run the ingest for this split",
            )

    def next(self, wrap: bool = True) -> Sample | None:
        """The next good sample of this stream; bad data is skipped and counted.

        At the end of a pass it starts the next one, or returns None when `wrap` is False (the
        loader prefers unread samples of other streams before re-reading any).
        """
        while True:
            piece = self.pieces[self.piece_pos]
            if self.read_in_piece >= piece.num_samples:
                self._check_shard_end(piece)
                if self._advance_piece() and not wrap:
                    return None
                continue
            shard = self.catalog.shards[piece.shard]
            if self._it is None:
                try:
                    if not shard.path.is_file():
                        raise FileNotFoundError(f"{shard.path} is listed in index.json but missing")
                    start = (
                        self.offset
                        if self.offset is not None
                        else piece.offset
                        if piece.offset is not None
                        else sample_offset(shard, piece.start)
                    )
                    self._it = self._open(shard.path, start=start)
                except (OSError, ValueError, IndexError, ShardFormatError) as exc:
                    self.log.skip("missing_shard", f"cannot open {shard.path} ({exc!r})")
                    if self._advance_piece() and not wrap:
                        return None
                    continue
            try:
                key, members, offset, end = next(self._it)
            except StopIteration:
                self.log.skip(
                    "short_shard",
                    f"{shard.path} ends after {piece.start + self.read_in_piece} "
                    f"samples, index.json says {shard.num_samples}",
                )
                if self._advance_piece() and not wrap:
                    return None
                continue
            except TruncatedShardError as exc:
                self.log.skip("truncated_shard", f"{shard.path}: {exc}")
                if self._advance_piece() and not wrap:
                    return None
                continue
            except (CorruptShardError, OSError, UnicodeDecodeError) as exc:
                self.log.skip("corrupt_shard", f"{shard.path}: {exc}")
                if self._advance_piece() and not wrap:
                    return None
                continue
            # the reader's span, not a size recomputed from the payloads: exact for any tar
            # (PAX / GNU records included), so the cursor and `loc` re-read the same sample
            self.offset = end
            self.read_in_piece += 1
            try:
                sample = self.parse(key, members, (piece.shard, offset, end - offset))
            except BadSample as exc:
                self.log.skip(exc.reason, str(exc))
                continue
            self.good_in_pass += 1
            if self.pass_no == 0:
                self.fresh += 1
            return sample
