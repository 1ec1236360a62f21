"""Split presets on the REAL VoxCeleb metadata, identity-disjointness and the leak check."""

from __future__ import annotations

import pytest

from pipeline.bundled import META_DIR
from pipeline.meta import read_meta
from pipeline.splits import (
    PINS_FILE,
    WEN1225_FILE,
    SplitError,
    SplitLeakError,
    assign_splits,
    check_disjoint,
    find_leaks,
)


@pytest.fixture(scope="module")
def vox1():
    return read_meta(META_DIR / "vox1_meta.csv")


@pytest.fixture(scope="module")
def vox2():
    return read_meta(META_DIR / "vox2_meta.csv")


def _disjoint_and_complete(assignment, meta):
    assert set(assignment.split_of) | set(assignment.excluded) == set(meta.identities)
    assert not set(assignment.split_of) & set(assignment.excluded)


def test_wen1251_letter_split_counts(vox1):
    a = assign_splits("wen1251", vox1)
    assert a.counts() == {"train": 942, "val": 116, "test": 193}
    # independent re-derivation: the first letter of the VGGFace1 name
    for identity, split in a.split_of.items():
        letter = vox1[identity].name[0].upper()
        assert split == ("val" if letter in "AB" else "test" if letter in "CDE" else "train")
    _disjoint_and_complete(a, vox1)


def test_wen1225_counts_and_exclusions(vox1):
    a = assign_splits("wen1225", vox1)
    # val/test exact from the published lists; train 926 (the papers' 924 minus 2 unknown ids)
    assert a.counts() == {"train": 926, "val": 112, "test": 189}
    excluded_names = {vox1[i].name for i in a.excluded}
    assert {
        "A.J._Buckley",
        "Dr._Dre",
        "Samuel_L._Jackson",
        "Abbie_Cornish",
        "Charlie_Day",
        "David_Cassidy",
    } <= excluded_names
    assert all("." in vox1[i].name for i in a.excluded if a.excluded[i].endswith("dotted_name"))
    _disjoint_and_complete(a, vox1)


def test_pins_counts_via_name_to_id(vox1):
    a = assign_splits("pins", vox1)
    assert a.counts() == {"train": 901, "val": 100, "test": 250}
    listed = dict(line.split() for line in PINS_FILE.read_text().splitlines() if line.strip())
    assert all(a.split_of[vox1.id_for_name(n)] == {"1": "train", "2": "val", "4": "test"}[c] for n, c in listed.items())


def test_vox2_presets(vox2):
    full = assign_splits("vox2", vox2)
    assert full.counts() == {"train": 5994, "val": 0, "test": 120}
    test = assign_splits("vox2test", vox2)
    assert test.counts() == {"train": 0, "val": 0, "test": 118}
    assert "id04170" not in test.split_of and "id05348" not in test.split_of
    assert set(test.split_of) <= {i for i, s in full.split_of.items() if s == "test"}


def test_preset_for_the_wrong_dataset_is_refused(vox1, vox2):
    with pytest.raises(SplitError, match="is for voxceleb1"):
        assign_splits("wen1251", vox2)
    with pytest.raises(SplitError, match="unknown split preset"):
        assign_splits("wen9999", vox1)


def test_lists_for_real_data_refuse_other_meta(tmp_path):
    meta = tmp_path / "vox1_meta.csv"
    meta.write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tAnna_Synth\tf\tUSA\tdev\nid10002\tBob_Synth\tm\tUK\tdev\n"
    )
    m = read_meta(meta)
    with pytest.raises(SplitError, match="does not describe"):
        assign_splits("wen1225", m)
    with pytest.raises(SplitError, match="none of the names"):
        assign_splits("pins", m)
    assert assign_splits("wen1251", m).split_of == {"id10001": "val", "id10002": "val"}


def test_presets_read_the_bundled_lists():
    assert WEN1225_FILE == META_DIR / "vox1_identity_splits_derived.csv" and WEN1225_FILE.is_file()
    assert PINS_FILE == META_DIR / "learnable_pins_lists" / "identity_splits.txt" and PINS_FILE.is_file()


def test_check_disjoint_names_the_clashing_identities():
    check_disjoint({"train": ["id1", "id2"], "test": ["id3"]})
    with pytest.raises(SplitLeakError, match=r"id2 \(train and test\)"):
        check_disjoint({"train": ["id1", "id2"], "test": ["id2", "id3"]})


def test_find_leaks_ignores_the_same_split():
    existing = {"train": {"a", "b"}, "test": {"c"}}
    assert find_leaks({"train": ["a", "b", "d"]}, existing) == []
    assert find_leaks({"test": ["a", "c"]}, existing) == [("a", "test", "train")]
