"""`data.member_reads: workers` (issue 12, items 3 and 4): the reader streams read only tar
headers and each sample's json, the buffer holds where the face and audio members lie, and the
decode workers read them from the shard. The batches must be exactly those of `stream` (any audio
member, any `buffer_audio`, threads or processes, after a resume or an elastic resume); the buffer
must hold no member bytes; a member that can no longer be read is a counted skip."""

import io
import itertools
import os
import tarfile

import pytest
import torch

import shards.format as fmt
from shards.batch import check_tuple_batch
from shards.format import (
    MemberSpan,
    TruncatedShardError,
    iter_tar_sample_refs,
    iter_tar_sample_spans,
    read_member,
    read_sample_refs_at,
)
from shards.loader import TupleLoader
from shards.stream import ShardReadError


def _cfg(d, **kw):
    base = dict(
        shards=[d], batch_size=4, k=2, buffer_size=16, crop_seconds=1.0, num_workers=2, seed=3, direction="both",
        decode_workers="threads",
    )  # fmt: skip
    base.update(kw)
    return base


def _epochs(cfg, epochs=2, state=None):
    with TupleLoader(cfg) as loader:
        if state is not None:
            loader.load_state_dict(state)
        out = []
        for epoch in range(loader.epoch if state is not None else 0, epochs):
            loader.set_epoch(epoch)
            out += list(loader)
        return out, loader.report()


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k], k


@pytest.mark.parametrize("member", ["wav", "flac", "flac_old"])
@pytest.mark.parametrize("buffer_audio", ["clip", "window", "crop"])
def test_workers_read_the_same_batches_as_the_stream(audio_member_sets, member, buffer_audio):
    extra = {"buffer_window_seconds": 1.5} if buffer_audio == "window" else {}
    cfg = _cfg(audio_member_sets[member], buffer_audio=buffer_audio, **extra)
    stream, held = _epochs({**cfg, "member_reads": "stream"})
    by_ref, refs = _epochs({**cfg, "member_reads": "workers"})
    _assert_same(stream, by_ref)
    assert held["member_reads"] == "stream" and held["buffer_encoded_bytes"] > 0
    assert refs["member_reads"] == "workers" and refs["buffer_encoded_bytes"] == 0


def test_decode_processes_read_the_same_batches_as_the_stream(audio_member_sets):
    cfg = _cfg(audio_member_sets["flac"], decode_workers="processes", buffer_audio="window")
    stream, _ = _epochs({**cfg, "member_reads": "stream"}, epochs=1)
    by_ref, _ = _epochs({**cfg, "member_reads": "workers"}, epochs=1)
    _assert_same(stream, by_ref)


def test_the_buffer_holds_locations_not_bytes(audio_member_sets):
    with TupleLoader(_cfg(audio_member_sets["wav"], member_reads="workers")) as loader:
        next(iter(loader))
        held = list(loader.buffer.fifo())
    assert held and all(s.face == b"" and s.audio == b"" and s.refs is not None for s in held)
    for s in held:  # the locations point at the members: the face frame's JPEG, the WAV
        assert read_member(s.refs.path, s.refs.face)[:2] == b"\xff\xd8"
        assert read_member(s.refs.path, s.refs.audio)[:4] == b"RIFF"


def test_resume_and_elastic_resume_match_the_stream(audio_member_sets):
    cfg = _cfg(audio_member_sets["flac"], buffer_audio="crop")
    for member_reads in ("stream", "workers"):
        with TupleLoader({**cfg, "member_reads": member_reads}) as loader:
            list(itertools.islice(iter(loader), 3))
            state = loader.state_dict()
        rest, _ = _epochs({**cfg, "member_reads": member_reads}, state=state)
        if member_reads == "stream":
            expected = rest
    _assert_same(expected, rest)
    # another world size: every rank's states, read back by reference
    states = []
    for rank in range(2):
        with TupleLoader({**cfg, "member_reads": "workers"}, rank=rank, world_size=2) as loader:
            list(itertools.islice(iter(loader), 1))
            states.append(loader.state_dict())
    elastic = {}
    for member_reads in ("stream", "workers"):
        with TupleLoader({**cfg, "member_reads": member_reads}) as loader:
            loader.load_state_dict(states)
            loader.set_epoch(0)
            elastic[member_reads] = list(loader)
    _assert_same(elastic["stream"], elastic["workers"])


def test_a_member_that_cannot_be_read_back_is_a_counted_skip(audio_member_sets, tmp_path):
    """A shard that goes away after its headers were read: the buffered samples from it are
    dropped from their tuples and counted (`unreadable_member`), the stream counts the missing
    shard, and the batches stay valid; with `strict` the first one stops the run naming it."""
    import shutil

    d = tmp_path / "set"
    shutil.copytree(audio_member_sets["wav"], d)
    for strict in (False, True):
        if strict:
            shutil.rmtree(d)
            shutil.copytree(audio_member_sets["wav"], d)
        with TupleLoader(_cfg(str(d), member_reads="workers", strict=strict, num_workers=1)) as loader:
            it = iter(loader)
            next(it)
            shard = max(
                {s.loc[0] for s in loader.buffer.fifo()}, key=lambda i: sum(s.loc[0] == i for s in loader.buffer.fifo())
            )
            os.remove(loader.catalog.shards[shard].path)
            if strict:
                with pytest.raises(ShardReadError, match="cannot be read back"):
                    list(it)
                continue
            rest = list(it)
            for b in rest:
                check_tuple_batch(b, k=2)
            assert loader.skip_counts.get("unreadable_member", 0) > 0
            assert any("cannot be read back" in m for m in loader.report()["skip_messages"])


def test_reference_reader_matches_the_byte_reader_and_reads_a_fraction(audio_member_sets, monkeypatch):
    path = sorted(p.path for p in os.scandir(audio_member_sets["flac"]) if p.name.endswith(".tar"))[0]
    read = []
    real_pread = os.pread
    monkeypatch.setattr(fmt.os, "pread", lambda fd, n, off: read.append(n) or real_pread(fd, n, off))
    refs = list(iter_tar_sample_refs(path))
    read_by_the_stream = sum(read)
    spans = list(iter_tar_sample_spans(path))
    assert [(k, o, e) for k, _, o, e in refs] == [(k, o, e) for k, _, o, e in spans]
    for (key, members, offset, end), (_, by_ref, _, _) in zip(spans, refs, strict=True):
        assert by_ref["json"] == members["json"]
        assert {e: read_member(path, s) for e, s in by_ref.items() if e != "json"} == {
            e: v for e, v in members.items() if e != "json"
        }
        assert all(isinstance(s, MemberSpan) for e, s in by_ref.items() if e != "json")
        assert read_sample_refs_at(path, offset, end - offset) == (key, by_ref)
    assert read_by_the_stream < 0.3 * os.path.getsize(path)  # headers and json, not the members


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_reference_reader_handles_foreign_tars_and_reports_truncation(tmp_path, tar_format):
    # > 100 bytes: PAX or GNU long-name records, a ustar prefix
    deep = "d" * 60 + "/" + "e" * 60 if tar_format != tarfile.USTAR_FORMAT else "p" * 120
    path = tmp_path / "foreign.tar"
    with tarfile.open(path, "w", format=tar_format) as tf:
        for i in range(3):
            for ext, payload in (("json", b'{"i": %d}' % i), ("f0.jpg", bytes([i]) * 9000), ("wav", b"w" * 700)):
                info = tarfile.TarInfo(f"{deep}/k{i}.{ext}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    spans = list(iter_tar_sample_spans(path))
    refs = list(iter_tar_sample_refs(path))
    assert [(k, o, e) for k, _, o, e in refs] == [(k, o, e) for k, _, o, e in spans]
    assert [read_member(path, m["f0.jpg"]) for _, m, _, _ in refs] == [m["f0.jpg"] for _, m, _, _ in spans]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[: spans[1][2] + 2000])  # inside the second sample's JPEG
    with pytest.raises(TruncatedShardError, match="ends inside member"):
        list(iter_tar_sample_refs(cut))


def test_member_reads_is_validated(audio_member_sets):
    with pytest.raises(ValueError, match=r"data.member_reads must be one of \['stream', 'workers'\]"):
        TupleLoader(_cfg(audio_member_sets["wav"], member_reads="disk"))


def test_a_replaced_or_rewritten_shard_is_refused_not_read(audio_member_sets, tmp_path):
    """A location is only valid in the file it was read from: after `os.replace` (another inode)
    or an in-place rewrite (another mtime), reading it raises instead of returning the bytes that
    now sit at that offset, and the loader counts the item as `unreadable_member`."""
    import shutil

    src = sorted(p.path for p in os.scandir(audio_member_sets["wav"]) if p.name.endswith(".tar"))
    path = tmp_path / "s.tar"
    shutil.copy(src[0], path)
    _, members, _, _ = next(iter_tar_sample_refs(path))
    face = members["f0.jpg"]
    assert read_member(path, face)[:2] == b"\xff\xd8"
    other = tmp_path / "other.tar"
    shutil.copy(src[1], other)
    os.replace(other, path)  # a re-ingest publishing a new shard under the same name
    with pytest.raises(fmt.ShardChangedError, match="replaced or rewritten"):
        read_member(path, face)
    _, members, _, _ = next(iter_tar_sample_refs(path))
    face = members["f0.jpg"]
    data = path.read_bytes()
    path.write_bytes(data)  # the same size, rewritten in place
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(fmt.ShardChangedError):
        read_member(path, face)


def test_restoring_a_sample_reads_nothing_after_it(audio_member_sets, tmp_path):
    """`read_sample_refs_at` (resume, elastic resume) reads only the sample's own span, like
    `read_sample_at`: damage in the next sample's header does not make the restore fail."""
    path = tmp_path / "s.tar"
    path.write_bytes(
        open(sorted(p.path for p in os.scandir(audio_member_sets["flac"]) if p.name.endswith(".tar"))[0], "rb").read()
    )
    spans = list(iter_tar_sample_spans(path))
    (key, _, offset, end), nxt = spans[0], spans[1][2]
    data = bytearray(path.read_bytes())
    data[nxt + 10] ^= 0xFF  # the next sample's first header checksum no longer matches
    path.write_bytes(bytes(data))
    assert read_sample_refs_at(path, offset, end - offset)[0] == key
    with pytest.raises(fmt.CorruptShardError):
        read_sample_refs_at(path, nxt, spans[1][3] - nxt)


def test_unreadable_faces_never_count_as_dali_failures(audio_member_sets):
    """DALI faces (thread mode) read by reference: faces that cannot be read are that item's
    `unreadable_member`, and a batch whose faces are all unreadable must not reach DALI (an
    empty batch fails there and three such failures would switch DALI off)."""
    pytest.importorskip("nvidia.dali")
    import dataclasses

    from shards.format import MemberSpan
    from shards.stream import BadSample, MemberRefs

    with TupleLoader(_cfg(audio_member_sets["wav"], face_decoder="dali", member_reads="workers")) as loader:
        next(iter(loader))
        held = list(loader.buffer.fifo())[:4]
        gone = [
            dataclasses.replace(s, refs=MemberRefs("/nonexistent/shard.tar", MemberSpan(512, 9), MemberSpan(0, 9)))
            for s in held
        ]
        guard = loader._face_decoder
        before = (guard.kind, guard.fallback_batches)
        for _ in range(4):  # more than the three failures in a row that give DALI up
            faces = loader._decode_faces_dali(gone)
            assert all(isinstance(f, BadSample) and f.reason == "unreadable_member" for f in faces)
        mixed = loader._decode_faces_dali([held[0], gone[1], held[2]])
        assert (guard.kind, guard.fallback_batches) == before
    assert isinstance(mixed[1], BadSample) and mixed[0].shape == mixed[2].shape == (*mixed[0].shape[:2], 3)
