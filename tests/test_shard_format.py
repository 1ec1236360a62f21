"""The shard format is readable by independent tools and fails loudly when damaged."""

import hashlib
import io
import subprocess
import sys
import tarfile

import pytest

from shards import format as shard_format
from shards.format import (
    CorruptShardError,
    ShardWriter,
    TruncatedShardError,
    iter_tar_sample_spans,
    iter_tar_samples,
    make_key,
    read_dali_index,
    read_sample_at,
    split_member_name,
)


def _samples(n=5):
    out = []
    for i in range(n):
        key = make_key("voxceleb2", f"id0001{i % 3}", "-ab_cd.EF12", f"{i:05d}")
        members = {
            "f0.jpg": bytes([i]) * (100 + 37 * i),
            "f1.jpg": bytes([i + 1]) * (513 + i),
            "flac": bytes(range(256)) * (i + 1),
            "json": f'{{"i": {i}}}'.encode(),
        }
        out.append((key, members))
    return out


@pytest.fixture
def shard(tmp_path):
    path = tmp_path / "shard-000000.tar"
    with ShardWriter(path) as w:
        for key, members in _samples():
            w.add(key, members)
    return path, w.records


def test_key_is_dot_free_and_prefixed():
    key = make_key("voxceleb2", "id00012", "_a.b/c-d", "00001")
    assert key.startswith("vox2_id00012__a-b-c-d-h") and key.endswith("_00001")  # + hash of the raw name
    assert "." not in key and not key.startswith("_")
    with pytest.raises(ValueError, match="unknown dataset"):
        make_key("vgg", "a", "b", "c")


def test_roundtrip_with_tarfile_and_our_reader(shard):
    path, records = shard
    expected = _samples()
    with tarfile.open(path) as tf:
        names = tf.getnames()
        assert names == [f"{k}.{e}" for k, m in expected for e in m]
        for k, m in expected:
            for e, payload in m.items():
                assert tf.extractfile(f"{k}.{e}").read() == payload
    ours = list(iter_tar_samples(path))
    assert [(k, m) for k, m, _ in ours] == expected
    assert [off for _, _, off in ours] == [r.offset for r in records]
    assert path.stat().st_size % 512 == 0


def test_roundtrip_with_webdataset(shard):
    import webdataset as wds

    path, _ = shard
    got = [(s["__key__"], s["flac"]) for s in wds.WebDataset(str(path), shardshuffle=False)]
    assert got == [(k, m["flac"]) for k, m in _samples()]


def test_dali_index_equals_wds2idx(shard, tmp_path):
    path, _ = shard
    ref = tmp_path / "ref.idx"
    subprocess.run([sys.executable, "-m", "wds2idx", str(path), str(ref)], check=True, capture_output=True)
    assert read_dali_index(path.with_suffix(".idx")) == read_dali_index(ref)


def test_random_access_and_resume_offsets(shard):
    path, records = shard
    expected = _samples()
    for rec, (key, members) in zip(records, expected):
        assert read_sample_at(path, rec.offset, rec.size) == (key, members)
        assert rec.sha1 == hashlib.sha1(b"".join(members.values())).hexdigest()
    resumed = [k for k, _, _ in iter_tar_samples(path, start=records[3].offset)]
    assert resumed == [k for k, _ in expected[3:]]


def test_deterministic_bytes(tmp_path):
    blobs = []
    for name in ("a.tar", "b.tar"):
        with ShardWriter(tmp_path / name) as w:
            for key, members in _samples():
                w.add(key, members)
        blobs.append((tmp_path / name).read_bytes())
    assert blobs[0] == blobs[1]


def test_failed_write_publishes_nothing(tmp_path):
    path = tmp_path / "shard-000001.tar"
    with pytest.raises(RuntimeError):
        with ShardWriter(path) as w:
            w.add("vox2_a_b_c", {"json": b"{}"})
            raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_corrupt_shards_raise(shard, tmp_path):
    path, records = shard
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: records[2].offset + 700])
    with pytest.raises(TruncatedShardError, match="ends inside member"):
        list(iter_tar_samples(cut))
    bad = bytearray(data)
    bad[records[1].offset + 10] ^= 0xFF
    with pytest.raises(CorruptShardError, match="checksum"):
        list(iter_tar_samples(io.BytesIO(bytes(bad))))


def test_rejects_keys_that_would_break_webdataset(tmp_path):
    with ShardWriter(tmp_path / "x.tar") as w:
        with pytest.raises(ValueError, match="must not contain"):
            w.add("vox2.id", {"json": b"{}"})
        w.add("ok", {"json": b"{}"})


def test_eval_store_roundtrip(tmp_path):
    import numpy as np

    from shards.evalstore import EvalStore, EvalStoreWriter

    rng = np.random.default_rng(0)
    rows = []
    w = EvalStoreWriter(tmp_path / "eval.zarr", num_faces=2, face_size=8, flush_every=3)
    for i in range(7):
        faces = rng.integers(0, 255, size=(2, 8, 8, 3), dtype=np.uint8)
        audio = rng.integers(-3000, 3000, size=100 + 13 * i).astype(np.int16)
        row = dict(
            key=f"vox1_id1000{i}_v_{i:05d}",
            identity=f"id1000{i % 3}",
            video="v",
            clip=f"{i:05d}",
            gender="mf"[i % 2],
            nationality=None,
        )
        w.append(faces=faces, audio=audio, **row)
        rows.append((row, faces, audio))
    assert not (tmp_path / "eval.zarr").exists(), "store must not be visible before close()"
    w.close()
    store = EvalStore(tmp_path / "eval.zarr")
    assert len(store) == 7
    for i, (row, faces, audio) in enumerate(rows):
        j = store.index_of(row["key"])
        assert j == i and store.identities[j] == row["identity"] and store.genders[j] == row["gender"]
        np.testing.assert_array_equal(store.faces(j), faces)
        np.testing.assert_array_equal(store.audio(j), audio)
    with pytest.raises(ValueError, match="faces must be uint8"):
        EvalStoreWriter(tmp_path / "x.zarr", 2, 8).append(
            key="k",
            identity="i",
            video="v",
            clip="c",
            faces=np.zeros((1, 8, 8, 3), np.uint8),
            audio=np.ones(3, np.int16),
        )
    with pytest.raises(FileNotFoundError, match="pipeline.ingest"):
        EvalStore(tmp_path / "missing.zarr")


def _foreign_tar(path, fmt, members):
    """A tar written by Python's tarfile (not our writer): long names become PAX / GNU records,
    directories and symlinks sit between samples, payloads are not padded like ours."""
    with tarfile.open(path, "w", format=fmt) as tf:
        info = tarfile.TarInfo("some-dir")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
            if name.endswith(".json"):
                link = tarfile.TarInfo(name + "-link")
                link.type, link.linkname = tarfile.SYMTYPE, "target"
                tf.addfile(link)


def _long_name_members():
    deep = "d" * 60 + "/" + "e" * 60  # > 100 bytes: needs PAX / GNU records (or a ustar prefix)
    members = []
    for i in range(4):
        key = f"{deep}/vox2_id{i:05d}_" + "v" * 90 + f"_{i:05d}"
        members += [
            (f"{key}.json", f'{{"i": {i}}}'.encode()),
            (f"{key}.f0.jpg", bytes([i]) * (700 + 300 * i)),
            (f"{key}.wav", bytes(range(256)) * (3 + i)),
        ]
    return members


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_foreign_tars_long_names_and_exact_sample_spans(tmp_path, fmt):
    if fmt == tarfile.USTAR_FORMAT:  # ustar splits a long path into prefix + name (no records)
        members = [
            (f"{'p' * 120}/k{i // 3}.{ext}", payload)
            for i, (ext, payload) in enumerate([("json", b"{}"), ("f0.jpg", b"x" * 600), ("wav", b"y" * 9)] * 3)
        ]
    else:
        members = _long_name_members()
    path = tmp_path / "foreign.tar"
    _foreign_tar(path, fmt, members)
    expected: dict[str, dict[str, bytes]] = {}
    for name, payload in members:
        base, ext = split_member_name(name)
        expected.setdefault(base, {})[ext] = payload
    spans = list(iter_tar_sample_spans(path))
    assert [(k, m) for k, m, _, _ in spans] == list(expected.items())
    assert [(k, m, o) for k, m, o, _ in spans] == list(iter_tar_samples(path))
    for i, (key, members_, offset, end) in enumerate(spans):
        # the span is exact: random access and resuming at `offset` see the same sample
        assert read_sample_at(path, offset, end - offset) == (key, members_)
        assert [s[0] for s in iter_tar_sample_spans(path, start=offset)] == list(expected)[i:]
        if i + 1 < len(spans):
            assert end <= spans[i + 1][2]


def test_reader_handles_chunk_boundaries_big_members_and_short_reads(tmp_path, monkeypatch):
    samples = [
        (
            f"vox2_a_b_{i:05d}",
            {
                "json": b"{}" * (i + 1),
                "f0.jpg": bytes([i]) * (1 + 97 * i),
                "wav": bytes([7]) * (3000 if i != 5 else 70_000),
            },
        )
        for i in range(12)
    ]
    path = tmp_path / "s.tar"
    with ShardWriter(path) as w:
        records = [w.add(k, m) for k, m in samples]

    class Trickle(io.RawIOBase):  # a stream that returns at most 700 bytes per call
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), 700, len(self.data) - self.pos)
            b[:n] = self.data[self.pos : self.pos + n]
            self.pos += n
            return n

    class ReadOnly:  # only `read`, no `readinto`
        def __init__(self, data):
            self.fh = io.BytesIO(data)

        def read(self, n):
            return self.fh.read(n)

    data = path.read_bytes()
    for chunk in (1 << 20, 4096, 512):
        monkeypatch.setattr(shard_format, "_CHUNK", chunk)
        for source in (path, Trickle(data), ReadOnly(data)):
            got = list(iter_tar_sample_spans(source))
            assert [(k, m) for k, m, _, _ in got] == samples
            assert [(o, e - o) for _, _, o, e in got] == [(r.offset, r.size) for r in records]


def test_header_checksum_is_exact_for_dense_headers(tmp_path):
    """A ustar header with > 256 non-zero bytes (long prefix + name) is checked with a full
    byte sum; any flipped byte, also in the checksum field itself, is a CorruptShardError."""
    name = "p" * 150 + "/" + "n" * 90 + ".json"
    path = tmp_path / "dense.tar"
    _foreign_tar(path, tarfile.USTAR_FORMAT, [(name, b"{}")])
    assert [k for k, _, _ in iter_tar_samples(path)] == [name[:-5]]
    data = path.read_bytes()
    start = data.index(b"n" * 90)  # the member's header (its name field comes first)
    assert start % 512 == 0 and data[start : start + 512].count(0) < 256
    for where in (start + 3, start + 150, start + 400, start + 148):
        bad = bytearray(data)
        bad[where] = ord("7") if bad[where] != ord("7") else ord("1")
        with pytest.raises(CorruptShardError):
            list(iter_tar_samples(io.BytesIO(bytes(bad))))
    bad = bytearray(data)
    bad[start + 148 : start + 156] = b"zz\0     "  # not a number at all: still a corrupt header
    with pytest.raises(CorruptShardError):
        list(iter_tar_samples(io.BytesIO(bytes(bad))))


def test_keys_stay_unique_and_dot_free_for_every_distinct_path():
    """'ü vid é' and 'ö vid à' both sanitise to '--vid--'; the second clip was dropped as a duplicate."""
    from shards.format import make_key

    a = make_key("voxceleb1", "id10001", "ü vid é", "00001")
    b = make_key("voxceleb1", "id10001", "ö vid à", "00001")
    assert a != b and "." not in a + b and a.startswith("vox1_id10001_--vid---h")
    assert make_key("voxceleb1", "id10001", "a.b", "00001") != make_key("voxceleb1", "id10001", "a-b", "00001")
    # real VoxCeleb fields are already safe: their keys do not change
    assert make_key("voxceleb2", "id00012", "_-AbC-1_xyz", "00001") == "vox2_id00012__-AbC-1_xyz_00001"
    assert make_key("voxceleb1", "id10270", "5r0dWxy17C8", "00001") == "vox1_id10270_5r0dWxy17C8_00001"
