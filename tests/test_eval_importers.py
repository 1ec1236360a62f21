"""Published-list importers on the REAL files bundled in pipeline/voxceleb_meta."""

import pytest
from eval_fakes import build_store

from launch.eval.importers import StoreResolver, import_list, load_vox1_names, parse_item, read_rows, resolve_items
from launch.eval.trials import TrialSet
from pipeline.bundled import META_DIR
from shards.evalstore import EvalStore

META = META_DIR

# rows per file, counted independently when the lists were collected (docs/REFERENCES.md#e9)
EXPECTED_ROWS = {
    "learnable_pins_lists/veriflist_test_random_unseenunheard.txt.gz": 30496,
    "learnable_pins_lists/veriflist_test_G_unseenunheard.txt.gz": 30496,
    "learnable_pins_lists/veriflist_test_N_unseenunheard.txt.gz": 28193,
    "learnable_pins_lists/veriflist_test_A_unseenunheard.txt.gz": 30496,
    "learnable_pins_lists/veriflist_test_GNA_unseenunheard.txt.gz": 27280,
    "learnable_pins_lists/veriflist_test_random_seenheard.txt.gz": 18020,
    "learnable_pins_lists/veriflist_test_G_seenheard.txt.gz": 18020,
    "learnable_pins_lists/veriflist_test_A_seenheard.txt.gz": 18020,
    "learnable_pins_lists/veriflist_test_N_seenheard.txt.gz": 17840,
    "learnable_pins_lists/veriflist_test_GNA_seenheard.txt.gz": 17380,
    "cmpc_lists/matching_v2f_U.csv.gz": 10000,
    "cmpc_lists/matching_f2v_U.csv.gz": 10000,
    "cmpc_lists/matching_v2f_G.csv.gz": 10000,
    "cmpc_lists/matching_f2v_G.csv.gz": 10000,
    "cmpc_lists/matching_v2f_N.csv.gz": 9360,
    "cmpc_lists/matching_f2v_N.csv.gz": 9360,
    "cmpc_lists/matching_v2f_GN.csv.gz": 9120,
    "cmpc_lists/matching_f2v_GN.csv.gz": 9120,
    "cmpc_lists/jpg_20k.csv.gz": 20000,
    "cmpc_lists/wav_20k.csv.gz": 20000,
    "seeking_the_shape_of_sound_lists/match_v2f_2_val.txt.gz": 42546,
    "seeking_the_shape_of_sound_lists/match_g_v2f_2_val.txt.gz": 42540,
    "seeking_the_shape_of_sound_lists/verify_v2f_test.txt.gz": 65550,
    "seeking_the_shape_of_sound_lists/verify_g_v2f_test.txt.gz": 65550,
    "seeking_the_shape_of_sound_lists/verify_f2v_test.txt.gz": 60228,
    "seeking_the_shape_of_sound_lists/verify_g_f2v_test.txt.gz": 60228,
    "seeking_the_shape_of_sound_lists/reterival_v2f_test.txt.gz": 21850 + 20076,
    "seeking_the_shape_of_sound_lists/reterival_f2v_test.txt.gz": 20076 + 21850,
}


@pytest.fixture(scope="module")
def names():
    return load_vox1_names(META / "vox1_meta.csv")


def test_every_published_list_parses_with_the_known_row_count(names):
    assert set(EXPECTED_ROWS) == {str(p.relative_to(META)) for p in META.glob("*/*.gz")}
    for rel, n in EXPECTED_ROWS.items():
        rows = read_rows(META / rel)
        assert len(rows) == n, rel
        # every path of every row follows one of the known conventions and names a known identity
        for row in rows[:: max(1, len(rows) // 500)]:
            for p in row:
                if isinstance(p, str):
                    ref = parse_item(p, names)
                    assert ref.reason is None and ref.identity.startswith("id"), (rel, p)


def test_path_conventions(names):
    pins_voice = parse_item("A.R._Rahman/gaQqIoV_aLY_0000001.wav", names)
    assert (pins_voice.identity, pins_voice.video, pins_voice.clip) == ("id10002", "gaQqIoV_aLY", "00001")
    frame = parse_item("A.R._Rahman/1.6/6WO410QOeuo/0005575.jpg", names)
    assert (frame.identity, frame.video, frame.clip) == ("id10002", "6WO410QOeuo", None)
    still = parse_item("CCH_Pounder/00000295.jpg", names)
    assert (still.identity, still.video) == ("id10117", None)
    wang = parse_item("/data1/datasets/Audio2/test/id00017/01dfn2spqyE/00001.wav", names)
    assert (wang.identity, wang.video, wang.clip) == ("id00017", "01dfn2spqyE", "00001")
    assert parse_item("Nobody_Known/x/1.jpg", names).reason == "name not in vox1_meta.csv"


def _store_for(rows, names, tmp_path, extra=()):
    """A store holding exactly the items named in `rows` (frames/stills become clip 00001)."""
    items = set(extra)
    for row in rows:
        for p in row:
            if isinstance(p, str):
                ref = parse_item(p, names)
                items.add((ref.identity, ref.video or "stillvid", ref.clip or "00001"))
    path = build_store(tmp_path / "eval.zarr", items=sorted(items), face_size=8, num_faces=1, seconds=0.1)
    return EvalStore(path)


def test_cmpc_matching_resolves_the_items_present_and_reports_the_rest(names, tmp_path):
    path = META / "cmpc_lists/matching_v2f_U.csv.gz"
    rows = read_rows(path)
    store = _store_for(rows[:5], names, tmp_path)
    ts, report = import_list(path, StoreResolver(store), names, split="voxceleb1/test")
    assert report.rows == 10000
    assert 5 <= report.trials < 10000 and len(ts.match["v2f"]) == report.trials
    assert report.unresolved["identity not in store"] > 0
    assert sum(report.unresolved.values()) >= report.rows - report.trials
    first = ts.match["v2f"][0]
    assert first["probe"] == "vox1_id10002_w9H-ZMvdE9M_00001"
    assert first["identity"] == "id10002" and first["negative_identities"] != ["id10002"]
    probes, cands, labels, _ = ts.matching("v2f", 2)
    assert store.identities[store.index_of(cands[0][labels[0]])] == "id10002"
    # saved like generated trials, with the list checksum in the header
    back = TrialSet.load(ts.save(tmp_path / "t.json"))
    assert back.header["source"] == "imported:matching_v2f_U.csv.gz" and back.header["list_md5"] == report.md5


def test_pins_veriflist_keeps_labels_and_maps_old_voice_names(names, tmp_path):
    path = META / "learnable_pins_lists/veriflist_test_random_unseenunheard.txt.gz"
    rows = read_rows(path)
    store = _store_for(rows[:4], names, tmp_path)
    ts, report = import_list(path, StoreResolver(store), names)
    pairs = ts.verify["v2f"]
    assert report.rows == 30496 and len(pairs) >= 4
    assert [p["label"] for p in pairs[:4]] == [r[2] for r in rows[:4]]
    assert all((p["identity"] == p["candidate_identity"]) == bool(p["label"]) for p in pairs)
    assert pairs[0]["probe"] == "vox1_id10002_gaQqIoV_aLY_00001"


def test_wen_vggface_stills_are_unresolved_unless_identity_fallback(names, tmp_path):
    path = META / "seeking_the_shape_of_sound_lists/verify_v2f_test.txt.gz"
    rows = read_rows(path)
    store = _store_for(rows[:3], names, tmp_path)
    _, strict = import_list(path, StoreResolver(store), names)
    assert strict.trials == 0
    assert any(r.startswith("VGGFace still") for r in strict.unresolved)
    ts, loose = import_list(path, StoreResolver(store, face_fallback="identity"), names)
    assert loose.trials >= 3
    assert {p["label"] for p in ts.verify["v2f"][:3]} <= {0, 1}


def test_retrieval_lists_report_coverage(names, tmp_path):
    path = META / "cmpc_lists/wav_20k.csv.gz"
    rows = read_rows(path)
    store = _store_for(rows[:10], names, tmp_path)
    keys, report = resolve_items(path, StoreResolver(store), names)
    assert report.rows == 20000 and len(keys) == 10
    assert (
        report.unresolved["identity not in store"]
        + report.unresolved["video not in store"]
        + report.unresolved["clip not in store"]
        == 20000 - 10
    )


def test_wang_label_lists_put_the_positive_at_the_labelled_column(names, tmp_path):
    # the format of the AICANet/ACIENet/DSANet lists (docs/REFERENCES.md#e10); the files
    # themselves are not bundled, so the rows are written here in that format
    v2f = tmp_path / "test_V2F_8vox1_label50.txt"
    v2f.write_text(
        "/data/datasets/wav1/id10117/59-3D0HIDAc/00001.wav /data/datasets/unzippedface/test/CCH_Pounder/59-3D0HIDAc/"
        "0000125.jpg /data/datasets/unzippedface/test/Caitriona_Balfe/abcdefghijk/0000250.jpg 0\n"
        "/data/datasets/wav1/id10117/59-3D0HIDAc/00002.wav /data/datasets/unzippedface/test/Caitriona_Balfe/"
        "abcdefghijk/0000300.jpg /data/datasets/unzippedface/test/CCH_Pounder/59-3D0HIDAc/0000150.jpg 1\n"
    )
    vox2 = tmp_path / "test_V2_V2F_8vox1_label50.txt"
    vox2.write_text(
        "/data1/datasets/Audio2/test/id00017/01dfn2spqyE/00001.wav "
        "/data1/datasets/image2/id00061/0G9G9oyFHI8/00002.jpg "
        "/data1/datasets/image2/id00017/01dfn2spqyE/00003.jpg 0 1\n"
    )
    f2v = tmp_path / "test_F2V_8vox1_label50.txt"
    f2v.write_text(
        "/x/unzippedface/test/CCH_Pounder/59-3D0HIDAc/0000125.jpg "
        "/x/wav1/id10117/59-3D0HIDAc/00002.wav /x/wav1/id10118/abcdefghijk/00001.wav 0\n"
    )
    items = [
        ("id10117", "59-3D0HIDAc", "00001"),
        ("id10117", "59-3D0HIDAc", "00002"),
        ("id10118", "abcdefghijk", "00001"),
        ("id00017", "01dfn2spqyE", "00001"),
        ("id00017", "01dfn2spqyE", "00003"),
        ("id00061", "0G9G9oyFHI8", "00002"),
    ]
    store = EvalStore(build_store(tmp_path / "eval.zarr", items=items, face_size=8, num_faces=1, seconds=0.1))
    resolver = StoreResolver(store)
    ts, report = import_list(v2f, resolver, names)
    assert report.rows == 2 and report.trials == 2 and not report.unresolved
    _, cands, labels, ids = ts.matching("v2f", 2)
    assert labels.tolist() == [0, 1] and ids == ["id10117", "id10117"]
    assert all(resolver.identity_of[row[lab]] == "id10117" for row, lab in zip(cands, labels))
    ts2, r2 = import_list(vox2, resolver, names)
    assert r2.trials == 1 and ts2.match["v2f"][0]["positive"] == "vox1_id00017_01dfn2spqyE_00003"
    ts3, r3 = import_list(f2v, resolver, names)
    assert r3.trials == 1 and ts3.match["f2v"][0]["positive"] == "vox1_id10117_59-3D0HIDAc_00002"
