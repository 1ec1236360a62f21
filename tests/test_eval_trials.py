"""Trial generation: determinism, invariants, options, file round trip and integrity checks."""

import json

import pytest

from launch.eval.trials import (
    TrialFileError,
    TrialOptions,
    TrialSet,
    check_disjoint,
    generate_trials,
    store_fingerprint,
)


def _table(n_ids=14, videos=3, clips=2):
    keys, ids, vids, genders = [], [], [], []
    for i in range(n_ids):
        for v in range(videos):
            for c in range(clips):
                keys.append(f"vox1_id{i:05d}_v{i}x{v}_{c:05d}")
                ids.append(f"id{i:05d}")
                vids.append(f"v{i}x{v}")
                genders.append("m" if i % 2 else "f")
    return keys, ids, vids, genders


def _gen(opts=None, table=None):
    opts = opts or TrialOptions(probes_per_identity=4)
    return generate_trials(*(table or _table()), opts, split="voxceleb1/test", store="mem")


def test_same_seed_same_trials_other_seed_other_trials(tmp_path):
    a, b = _gen(), _gen()
    assert a.body() == b.body()
    pa, pb = a.save(tmp_path / "a.json"), b.save(tmp_path / "b.json")
    assert pa.read_bytes() == pb.read_bytes()
    c = _gen(TrialOptions(seed=1, probes_per_identity=4))
    assert c.body() != a.body()


def test_invariants_of_every_k_way_trial():
    keys, ids, vids, genders = _table()
    ident_of = dict(zip(keys, ids))
    video_of = dict(zip(keys, vids))
    ts = _gen()
    for direction in ("v2f", "f2v"):
        assert len(ts.match[direction]) == 14 * 4
        for k in range(2, 11):
            probes, cands, labels, pids = ts.matching(direction, k)
            for p, row, lab, pid in zip(probes, cands, labels, pids):
                assert len(row) == k
                assert ident_of[p] == pid
                cand_ids = [ident_of[c] for c in row]
                assert cand_ids[lab] == pid  # positive at label
                negs = [c for j, c in enumerate(cand_ids) if j != lab]
                assert pid not in negs and len(set(negs)) == k - 1  # distinct, != probe
                assert video_of[row[lab]] != video_of[p]  # default: other video
        # nested: the K-way negatives are a prefix of the (K+1)-way negatives
        for t in ts.match[direction]:
            assert len(t["negatives"]) == 9 and len(t["slots"]) == 9
            assert all(0 <= s < k for s, k in zip(t["slots"], range(2, 11)))
        p3, c3, l3, _ = ts.matching(direction, 3)
        p4, c4, l4, _ = ts.matching(direction, 4)
        for r3, lab3, r4, lab4 in zip(c3, l3, c4, l4):
            n3 = [c for j, c in enumerate(r3) if j != lab3]
            n4 = [c for j, c in enumerate(r4) if j != lab4]
            assert n4[:2] == n3 and r3[lab3] == r4[lab4]


def test_positive_slots_are_spread_over_positions():
    ts = _gen(TrialOptions(probes_per_identity=6))
    _, _, labels, _ = ts.matching("v2f", 2)
    assert 0.3 < labels.mean() < 0.7


def test_verification_pairs_are_balanced_and_labelled_by_identity():
    ts = _gen()
    for d in ("v2f", "f2v"):
        probes, cands, labels, ids = ts.verification(d)
        assert labels.sum() * 2 == len(labels)
        ident = {k: i for k, i in zip(*_table()[:2])}
        assert all((ident[c] == ident[p]) == bool(lab) for p, c, lab in zip(probes, cands, labels))


def test_gender_matched_negatives_share_the_probe_gender():
    keys, ids, vids, genders = _table()
    g = dict(zip(keys, genders))
    ts = _gen(TrialOptions(probes_per_identity=3, max_k=6, gender_matched=True))
    for t in ts.match["v2f"]:
        assert {g[n] for n in t["negatives"]} == {g[t["probe"]]}


def test_same_video_rule_and_skips_are_counted():
    keys, ids, vids, genders = _table(n_ids=12, videos=1, clips=2)
    # every identity has one video: 'different' is impossible, 'same' works
    with_same = generate_trials(
        keys, ids, vids, genders, TrialOptions(probes_per_identity=2, positive_video="same"), split="s"
    )
    video_of = dict(zip(keys, vids))
    assert all(
        video_of[t["positive"]] == video_of[t["probe"]] and t["positive"] != t["probe"] for t in with_same.match["v2f"]
    )
    different = generate_trials(keys, ids, vids, genders, TrialOptions(probes_per_identity=2), split="s")
    assert different.match["v2f"] == []
    assert different.header["skipped"] == {
        "v2f: identity without a different-video positive": 12,
        "f2v: identity without a different-video positive": 12,
    }


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 10"):
        _gen(table=_table(n_ids=5))


def test_round_trip_and_integrity_checks(tmp_path):
    keys, ids, vids, genders = _table()
    ts = _gen()
    path = ts.save(tmp_path / "t.json")
    fp = store_fingerprint(keys, ids, vids)
    back = TrialSet.load(path, fingerprint=fp)
    assert back.body() == ts.body()
    assert back.header["seed"] == 0 and back.header["split"] == "voxceleb1/test"
    with pytest.raises(TrialFileError, match="different evaluation store"):
        TrialSet.load(path, fingerprint=store_fingerprint(keys[:-1], ids[:-1], vids[:-1]))
    doc = json.loads(path.read_text())
    doc["match"]["v2f"][0]["slots"][0] ^= 1
    path.write_text(json.dumps(doc))
    with pytest.raises(TrialFileError, match="checksum"):
        TrialSet.load(path)


def test_identity_disjointness_check():
    ts = _gen()
    check_disjoint(ts, {"id99999"})
    with pytest.raises(ValueError, match="training split"):
        check_disjoint(ts, {"id00003", "id99999"})


def test_authors_mode_rebuilds_the_published_list_structure():
    """8 probe clips and 50 rows per identity; V-F positives from the voice's own video (100 % of the
    authors' V-F rows), F-V positives from any video (their F-V list)."""
    keys, ids, vids, genders = _table(n_ids=14, videos=3, clips=4)
    video_of, ident_of = dict(zip(keys, vids)), dict(zip(keys, ids))
    ts = generate_trials(keys, ids, vids, genders, TrialOptions.authors(), split="voxceleb1/test")
    assert ts.header["options"]["mode"] == "authors"
    for direction in ("v2f", "f2v"):
        rows = ts.match[direction]
        per_identity = {}
        for t in rows:
            per_identity.setdefault(t["identity"], []).append(t)
        assert set(per_identity) == set(ids) and all(len(r) == 50 for r in per_identity.values())
        for trials in per_identity.values():
            probes = [t["probe"] for t in trials]
            assert len(set(probes)) == 8
            assert sorted(probes.count(p) for p in set(probes)) == [6, 6, 6, 6, 6, 6, 7, 7]
        same = [video_of[t["positive"]] == video_of[t["probe"]] for t in rows]
        assert all(ident_of[t["positive"]] == t["identity"] for t in rows)
        if direction == "v2f":
            assert all(same)
        else:
            assert 0 < sum(same) < len(same)  # any video: some same, most not
        assert all(t["positive"] != t["probe"] for t in rows)
        assert len(ts.verify[direction]) == 2 * len(rows)
    assert "authors' construction" in TrialOptions.authors().describe()
    strict = generate_trials(keys, ids, vids, genders, TrialOptions(probes_per_identity=4), split="s")
    assert all(video_of[t["positive"]] != video_of[t["probe"]] for t in strict.match["v2f"])
