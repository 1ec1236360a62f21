"""Bad data found at read time is skipped and counted (or a clear error when strict); batches stay
valid and every rank still yields steps_per_epoch batches."""

import json
import shutil

import numpy as np
import pytest

from shards.batch import check_tuple_batch
from shards.format import ShardWriter, make_key
from shards.loader import TupleLoader
from shards.stream import ShardReadError
from shards.testing import SyntheticSpec, corrupt_member, face_jpeg, make_shard_set, truncate_file, voice_flac


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    spec = SyntheticSpec(num_identities=8, videos_per_identity=3, clips_per_video=3, shard_sizes=[18, 18, 18, 18])
    return make_shard_set(tmp_path_factory.mktemp("pristine") / "s", spec)


@pytest.fixture
def shard_dir(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "s")


def _cfg(d, **kw):
    base = dict(shards=[str(d)], batch_size=4, k=3, buffer_size=24, crop_seconds=0.3, frame="first", seed=5)
    base.update(kw)
    return base


def _run_epoch(cfg):
    loader = TupleLoader(cfg)
    batches = list(loader)
    for b in batches:
        check_tuple_batch(b, k=cfg["k"])
    assert len(batches) == loader.steps_per_epoch
    return loader, batches


def test_truncated_shard_is_skipped_and_counted(shard_dir):
    truncate_file(shard_dir / "shard-000002.tar", 0.5)
    loader, _ = _run_epoch(_cfg(shard_dir))
    assert loader.skip_counts.get("truncated_shard", 0) >= 1
    assert any("shard-000002.tar" in m for m in loader.report()["skip_messages"])
    with pytest.raises(ShardReadError, match="shard-000002.tar.*strict"):
        list(TupleLoader(_cfg(shard_dir, strict=True)))


def test_missing_shard_file_is_skipped_and_counted(shard_dir):
    (shard_dir / "shard-000001.tar").unlink()
    loader, _ = _run_epoch(_cfg(shard_dir))
    assert loader.skip_counts.get("missing_shard", 0) >= 1


def _keys_of(d, n):
    return [json.loads(line)["key"] for line in open(d / "manifest.jsonl")][:n]


@pytest.mark.parametrize("ext, reason", [("f0.jpg", "undecodable_jpeg"), ("wav", "undecodable_audio")])
def test_undecodable_members_drop_only_their_tuples(shard_dir, ext, reason):
    for key in _keys_of(shard_dir, 12):
        corrupt_member(shard_dir, key, ext, b"\x00garbage\xff")
    loader, batches = _run_epoch(_cfg(shard_dir))
    report = loader.report()
    assert loader.skip_counts.get(reason, 0) >= 1
    assert report["dropped_tuples"] >= 1
    bad = set(_keys_of(shard_dir, 12))
    for b in batches:  # v2f: faces are candidates, voices anchors
        faces = {k for row in b["candidate_key"] for k in row}
        used = faces if ext.endswith("jpg") else set(b["anchor_key"])
        assert not used & bad  # no tuple points at an item that failed to decode
    with pytest.raises(ShardReadError, match="does not decode"):
        list(TupleLoader(_cfg(shard_dir, strict=True)))


def test_samples_with_missing_members_or_bad_json_are_skipped(shard_dir):
    rng = np.random.default_rng(0)

    def good_json(i):
        return json.dumps({"identity": f"id{10000 + i:05d}", "video": "vx", "clip": "00009"}).encode()

    bad = {
        make_key("vox2", "idbad", "v", "1"): {"f0.jpg": face_jpeg(0, 0, 32, rng), "json": good_json(0)},  # no flac
        make_key("vox2", "idbad", "v", "2"): {"flac": voice_flac(0, 0.5, 16000, rng), "json": good_json(1)},  # no jpg
        make_key("vox2", "idbad", "v", "3"): {
            "f0.jpg": face_jpeg(0, 0, 32, rng),
            "flac": voice_flac(0, 0.5, 16000, rng),
            "json": b"{not json",
        },
    }
    with ShardWriter(shard_dir / "shard-000009.tar") as w:
        for key, members in bad.items():
            w.add(key, members)
    index = json.loads((shard_dir / "index.json").read_text())
    index["shards"].append({"path": "shard-000009.tar", "num_samples": 3, "bytes": 0})
    index["num_samples"] += 3
    (shard_dir / "index.json").write_text(json.dumps(index))
    loader, batches = _run_epoch(_cfg(shard_dir))
    assert loader.skip_counts.get("missing_member", 0) >= 2 and loader.skip_counts.get("bad_json", 0) >= 1
    assert not any(k.startswith("vox2_idbad") for b in batches for k in b["anchor_key"])
    with pytest.raises(ShardReadError, match="strict"):
        list(TupleLoader(_cfg(shard_dir, strict=True)))


def test_unreadable_dataset_fails_with_a_clear_message(shard_dir):
    for p in shard_dir.glob("shard-*.tar"):
        truncate_file(p, 0.001)
    with pytest.raises(ShardReadError, match="no readable sample"):
        list(TupleLoader(_cfg(shard_dir)))
