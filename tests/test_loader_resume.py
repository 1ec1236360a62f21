"""Same seed -> same tuples; resuming from state_dict equals never stopping; ranks are disjoint
and equal even with uneven shards."""

import io
import itertools

import pytest
import torch

from shards.batch import check_tuple_batch
from shards.loader import TupleLoader
from shards.partition import partition_pieces
from shards.testing import SyntheticSpec, make_shard_set


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    # 7 shards of very unequal size (the case that hangs DDP with naive splitting)
    spec = SyntheticSpec(
        num_identities=10, videos_per_identity=3, clips_per_video=4, shard_sizes=[40, 5, 22, 9, 31, 3, 10]
    )
    return str(make_shard_set(tmp_path_factory.mktemp("resume") / "vox1" / "train", spec))


def _cfg(shard_dir, **kw):
    base = dict(
        shards=[shard_dir],
        batch_size=4,
        k=3,
        buffer_size=24,
        crop_seconds=0.4,
        num_workers=2,
        seed=11,
        direction="both",
        prefetch=2,
    )
    base.update(kw)
    return base


def _keys(batch):
    return (
        batch["direction"],
        tuple(batch["anchor_key"]),
        tuple(map(tuple, batch["candidate_key"])),
        tuple(batch["label"].tolist()),
    )


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_same_seed_same_tuples_other_seed_or_epoch_differs(shard_dir):
    a = [_keys(b) for b in _epoch(TupleLoader(_cfg(shard_dir)), 0)]
    b_loader = TupleLoader(_cfg(shard_dir, prefetch=0, num_workers=2))
    b = [_keys(x) for x in _epoch(b_loader, 0)]
    assert a == b  # prefetching and thread timing do not change anything
    assert a != [_keys(x) for x in _epoch(TupleLoader(_cfg(shard_dir, seed=12)), 0)]
    assert a != [_keys(x) for x in _epoch(b_loader, 1)]


@pytest.mark.parametrize("stop_at", [1, 5, 9])
def test_resume_equals_uninterrupted_across_restart(shard_dir, stop_at):
    ref_loader = TupleLoader(_cfg(shard_dir))
    reference = _epoch(ref_loader, 1)
    steps = ref_loader.steps_per_epoch
    assert steps == 120 // 8 and len(reference) == steps

    first = TupleLoader(_cfg(shard_dir))
    first.set_epoch(1)
    head = list(itertools.islice(iter(first), stop_at))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # must survive a real checkpoint round trip
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    first.close()

    resumed = TupleLoader(_cfg(shard_dir))
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # what a training loop does after loading: must not restart the epoch
    tail = list(resumed)
    got = head + tail
    assert [_keys(b) for b in got] == [_keys(b) for b in reference]
    for x, y in zip(got, reference):  # same decoded tensors too (crop, frame, features)
        assert torch.equal(x["faces"], y["faces"]) and torch.equal(x["voices"], y["voices"])
    # and the next epoch continues identically
    assert [_keys(b) for b in _epoch(resumed, 2)] == [_keys(b) for b in _epoch(ref_loader, 2)]


def test_breaking_out_and_iterating_again_continues_where_it_stopped(shard_dir):
    reference = [_keys(b) for b in _epoch(TupleLoader(_cfg(shard_dir)), 0)]
    loader = TupleLoader(_cfg(shard_dir))
    got = []
    for batch in loader:
        got.append(_keys(batch))
        if len(got) == 3:
            break  # e.g. a validation pause; prefetched batches must not be lost
    got += [_keys(b) for b in loader]
    assert got == reference


def test_state_at_epoch_end_starts_next_epoch(shard_dir):
    loader = TupleLoader(_cfg(shard_dir))
    _epoch(loader, 0)
    state = loader.state_dict()
    assert state["step"] == loader.steps_per_epoch
    other = TupleLoader(_cfg(shard_dir))
    other.load_state_dict(state)
    assert [_keys(b) for b in _epoch(other, 1)] == [_keys(b) for b in _epoch(TupleLoader(_cfg(shard_dir)), 1)]


def test_state_from_another_setup_is_refused(shard_dir):
    state = TupleLoader(_cfg(shard_dir)).state_dict()
    with pytest.raises(ValueError, match="num_workers"):
        TupleLoader(_cfg(shard_dir, num_workers=1)).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        TupleLoader(_cfg(shard_dir), rank=0, world_size=2).load_state_dict(state)


@pytest.mark.parametrize("world_size, workers", [(2, 1), (2, 2), (3, 3)])
def test_ranks_disjoint_equal_steps_and_repartitioned(shard_dir, world_size, workers):
    per_epoch = []
    for epoch in (0, 1):
        loaders = [
            TupleLoader(
                _cfg(shard_dir, num_workers=workers, buffer_size=16, batch_size=2), rank=r, world_size=world_size
            )
            for r in range(world_size)
        ]
        counts, seen = [], []
        for loader in loaders:
            batches = _epoch(loader, epoch)
            counts.append(len(batches))
            keys = set()
            for b in batches:
                check_tuple_batch(b, k=3)
                keys.update(b["anchor_key"])
                keys.update(k for row in b["candidate_key"] for k in row)
            seen.append(keys)
        assert len(set(counts)) == 1 and counts[0] == loaders[0].steps_per_epoch  # no DDP hang
        for i, j in itertools.combinations(range(world_size), 2):
            assert not seen[i] & seen[j], f"ranks {i} and {j} share samples"
        per_epoch.append(seen)
    # shards are re-dealt every epoch (a balanced deal of 7 uneven shards has few options, so
    # look at several epochs of the partition itself)
    catalog = loaders[0].catalog
    deals = {
        tuple(sorted(p.shard for p in partition_pieces(catalog, 11, e, world_size * workers)[0])) for e in range(6)
    }
    assert len(deals) > 1


def test_more_streams_than_shards_splits_shards(tmp_path):
    d = make_shard_set(
        tmp_path / "s", SyntheticSpec(num_identities=6, videos_per_identity=2, clips_per_video=4, shard_sizes=[48])
    )
    seen = []
    for rank in range(2):
        loader = TupleLoader(
            dict(shards=[str(d)], batch_size=2, k=2, buffer_size=8, crop_seconds=0.2, num_workers=2),
            rank=rank,
            world_size=2,
        )
        keys = set()
        for b in loader:
            check_tuple_batch(b, k=2)
            keys.update(b["anchor_key"])
        seen.append(keys)
        assert loader.report()["coverage"] > 0.9
    assert not seen[0] & seen[1]


def test_stream_cursor_is_exact_for_foreign_tars_with_pax_records(tmp_path):
    """A tar from another tool (PAX long-name records, a directory entry, unpadded sizes): the
    stream's cursor and each sample's location come from the reader's spans, so re-reading a
    location and resuming a cursor both land on the right sample."""
    import json
    import tarfile

    from shards.format import read_sample_at
    from shards.partition import Piece, ShardCatalog
    from shards.stream import PieceStream, SkipLog

    keys = [f"{'d' * 70}/{'e' * 40}/vox2_id{i:05d}_{'v' * 60}_{i:05d}" for i in range(6)]
    with tarfile.open(tmp_path / "shard-000000.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("d" * 70)
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for i, key in enumerate(keys):
            for ext, payload in (("json", b"{}"), ("f0.jpg", bytes([i]) * (100 + 450 * i)), ("wav", b"w" * 77)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    (tmp_path / "index.json").write_text(
        json.dumps(
            {
                "shards": [{"path": "shard-000000.tar", "num_samples": len(keys)}],
                "identities": {},
                "num_faces": 1,
                "face_size": 32,
                "sample_rate": 16000,
            }
        )
    )
    catalog = ShardCatalog([str(tmp_path)])

    def stream():
        return PieceStream(
            catalog, [Piece(0, 0, len(keys))], lambda key, members, loc: (key, loc), SkipLog(strict=True)
        )

    first = stream()
    got = [first.next(wrap=False) for _ in keys]
    assert [k for k, _ in got] == keys
    for key, (shard, offset, size) in got:
        assert read_sample_at(catalog.shards[shard].path, offset, size)[0] == key
    for stop in (1, 4):
        s = stream()
        for _ in range(stop):
            s.next(wrap=False)
        resumed = stream()
        resumed.load_state_dict(s.state_dict())
        assert [resumed.next(wrap=False)[0] for _ in keys[stop:]] == keys[stop:]
