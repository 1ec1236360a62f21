"""Unit tests of the ingest building blocks: meta parsing variants, txt boxes, frame choice,
layout variants of VoxCeleb1 faces, and audio checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from ingest_media import write_jpgs, write_track, write_wav

from pipeline.boxes import BoxFileError, read_track
from pipeline.bundled import META_DIR
from pipeline.extract import (
    ClipError,
    ExtractSettings,
    check_audio,
    choose_frames,
    clip_rng,
    extract_clip,
    read_audio,
    to_face_crop,
)
from pipeline.meta import MetaError, read_meta
from pipeline.sources import scan_voxceleb1

VOX2_VARIANTS = {
    "real_bom_padded": "\ufeffVoxCeleb2 ID,VGGFace2 ID,Gender,Set\nid00012 ,n000012 ,m ,dev \nid00015 ,n000015 ,f ,test \n",
    "crlf_renamed_header": "\ufeffid ,VGGFace2 ID ,Gender ,Set \r\nid00012 ,n000012 ,m ,dev \r\nid00015 ,n000015 ,f ,test \r\n",
    "no_spaces": "VoxCeleb2 ID,VGGFace2 ID,Gender,Set\nid00015,n000015,f,test\nid00012,n000012,m,dev\n",
    "tab": "VoxCeleb2_ID\tVGGFace2_ID\tGender\tSet\nid00012\tn000012\tm\tdev\nid00015\tn000015\tf\ttest\n",
}


@pytest.mark.parametrize("variant", sorted(VOX2_VARIANTS))
def test_vox2_meta_variants_parse_to_the_same_rows(tmp_path, variant):
    path = tmp_path / "vox2_meta.csv"
    path.write_bytes(VOX2_VARIANTS[variant].encode())
    meta = read_meta(path)
    assert meta.dataset == "voxceleb2"
    assert {i: (r.gender, r.set, r.vggface2_id) for i, r in meta.identities.items()} == {
        "id00012": ("m", "dev", "n000012"),
        "id00015": ("f", "test", "n000015"),
    }


def test_vox1_meta_comma_and_quoted_tab_copies(tmp_path):
    comma = tmp_path / "a.csv"
    comma.write_text("VoxCeleb1_ID,VGGFace1_ID,Gender,Nationality,Set\nid10001,A.J._Buckley,m,Ireland,dev\n")
    quoted = tmp_path / "b.csv"
    quoted.write_text(
        '"VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"\n"id10001\tA.J._Buckley\tm\tIreland\tdev"\n'
    )
    for path in (comma, quoted):
        meta = read_meta(path)
        assert meta.id_for_name("A.J._Buckley") == "id10001"
        assert meta["id10001"].nationality == "Ireland" and meta["id10001"].gender == "m"


def test_real_meta_files():
    v1 = read_meta(META_DIR / "vox1_meta.csv", "voxceleb1")
    v2 = read_meta(META_DIR / "vox2_meta.csv", "voxceleb2")
    assert (len(v1), len(v2)) == (1251, 6114)
    assert sum(r.gender == "m" for r in v1.identities.values()) == 690
    assert v1.id_for_name("Aamir_Khan") == "id10003" and v1.name_for_id("id10001") == "A.J._Buckley"
    assert v2["id00134"].vggface2_id == "n000140"
    assert all(r.set in ("dev", "test") for r in v2.identities.values())


@pytest.mark.parametrize(
    "text, match",
    [
        ("VoxCeleb2 ID,Gender\nid0012 ,m\n", "not a VoxCeleb id"),
        ("VoxCeleb2 ID,Gender\nid00012,m\nid00012,f\n", "appears twice"),
        ("Name,Gender\nfoo,m\n", "no identity column"),
        ("", "is empty"),
    ],
)
def test_meta_errors_name_the_problem(tmp_path, text, match):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(MetaError, match=match):
        read_meta(path)


def test_meta_for_the_wrong_dataset_is_refused(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("VoxCeleb2 ID,Gender,Set\nid00012,m,dev\n")
    with pytest.raises(MetaError, match="voxceleb2 id but the file was read as voxceleb1"):
        read_meta(path, "voxceleb1")


def test_track_file_parsing_and_boxes(tmp_path):
    track = read_track(write_track(tmp_path / "a.txt", "id10001", "abc", 2300, 4, normalised=False))
    assert not track.normalised and track.frames.tolist() == [2300, 2301, 2302, 2303]
    assert track.summary() == {
        "first_frame": 2300,
        "last_frame": 2303,
        "rows": 4,
        "offset": 1.0,
        "fv_conf": 17.5,
        "asd_conf": 4.2,
    }
    # VoxCeleb1 pixels refer to a 360-high frame: in a 720-high frame everything doubles
    assert track.pixel_box(track.box_for_frame(2301), 1280, 720) == (446, 160, 706, 420)
    norm = read_track(write_track(tmp_path / "b.txt", "id00012", "abc", 10, 3, normalised=True))
    assert norm.normalised and norm.pixel_box(norm.box_for_index(2), 200, 100) == (60, 10, 140, 80)


@pytest.mark.parametrize(
    "body, match",
    [
        ("FRAME \tX \tY \tW \tH \n000x12 \tleft \t?? \t-- \t7\n", "non-numeric"),
        ("FRAME \tX \tY \tW \tH \n000x12 \tleft \t?? \t-- \t\n", "expected 5 columns"),
        ("FRAME \tX \tY \tW \tH \n", "no rows"),
        ("Identity : id1\n", "no 'FRAME"),
        ("FRAME \tX \tY \tW \tH \n10 \t1 \t1 \t0 \t5\n", "positive"),
        ("FRAME \tX \tY \tW \tH \n10 \t1 \t1 \t4 \t5\n9 \t1 \t1 \t4 \t5\n", "increasing"),
    ],
)
def test_bad_track_files_are_errors(tmp_path, body, match):
    path = tmp_path / "bad.txt"
    path.write_text("Identity  : \tid1\nReference : \tx\n\n" + body)
    with pytest.raises(BoxFileError, match=match):
        read_track(path)


def test_choose_frames():
    assert choose_frames(100, 4, "even") == [12, 37, 62, 87]
    assert choose_frames(2, 4, "even") == [0, 0, 1, 1]
    a = choose_frames(50, 4, "random", clip_rng(3, "key"))
    assert a == choose_frames(50, 4, "random", clip_rng(3, "key"))
    assert a == sorted(a) and len(set(a)) == 4
    assert a != choose_frames(50, 4, "random", clip_rng(4, "key"))


def test_face_crop_is_square_and_follows_the_box():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[20:60, 120:160] = 255  # a white "face"
    crop = to_face_crop(frame, 32, (120, 20, 160, 60))
    assert crop.shape == (32, 32, 3) and crop.mean() > 250
    centre = to_face_crop(frame, 32, None)  # no box: centred square crop, not squashed
    assert centre.shape == (32, 32, 3)


def test_audio_checks(tmp_path):
    settings = ExtractSettings()
    loud = read_audio(str(write_wav(tmp_path / "a.wav", 1.0)))
    assert check_audio(loud, "a.wav", settings) == pytest.approx(1.0)
    silent = read_audio(str(write_wav(tmp_path / "s.wav", 1.0, silent=True)))
    with pytest.raises(ClipError) as err:
        check_audio(silent, "s.wav", settings)
    assert err.value.kind == "silent_audio"
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ClipError) as err:
        read_audio(str(tmp_path / "empty.wav"))
    assert err.value.kind == "zero_length_audio"


def _vox1_root(tmp_path: Path) -> Path:
    root = tmp_path / "vox1"
    root.mkdir()
    (root / "vox1_meta.csv").write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
        "id10002\tBea_Smith\tf\tUSA\tdev\n"
    )
    return root


def test_vox1_face_layout_variants(tmp_path):
    """Per-utterance folders without the version level and zero-padded, per-video frames keyed by
    id, and the old name-keyed wav layout all resolve to the right images."""
    root = _vox1_root(tmp_path)
    write_wav(root / "wav" / "id10001" / "-abcdefghij" / "00002.wav")
    write_jpgs(root / "faces" / "A.J._Buckley" / "-abcdefghij" / "00002", [50, 75])  # no "1.6" level
    write_wav(root / "wav" / "Bea_Smith" / "_klmnopqrst_0000003.wav")  # old layout
    write_jpgs(root / "faces" / "id10002" / "_klmnopqrst", [25, 50, 75])  # per-video frames, id folder
    # archive-part layout: vox1_test_wav/wav/...
    write_wav(root / "vox1_test_wav" / "wav" / "id10002" / "_klmnopqrst" / "00004.wav")
    meta = read_meta(root / "vox1_meta.csv")
    scan = scan_voxceleb1(root, meta)
    by_key = {c.key: c for c in scan.clips}
    assert set(by_key) == {
        "vox1_id10001_-abcdefghij_00002",
        "vox1_id10002__klmnopqrst_00003",
        "vox1_id10002__klmnopqrst_00004",
    }
    assert by_key["vox1_id10002__klmnopqrst_00004"].source == "vox1_test_wav/wav/id10002/_klmnopqrst/00004.wav"
    assert by_key["vox1_id10001_-abcdefghij_00002"].face_source == "interval_faces"
    assert [Path(p).name for p in by_key["vox1_id10002__klmnopqrst_00003"].frame_paths] == [
        "0000025.jpg",
        "0000050.jpg",
        "0000075.jpg",
    ]
    assert by_key["vox1_id10002__klmnopqrst_00003"].video == "_klmnopqrst"
    assert not scan.skipped


def test_vox1_stills_draw_different_faces_per_clip_and_unreadable_images_are_dropped(tmp_path):
    root = _vox1_root(tmp_path)
    stills = write_jpgs(root / "VGG_ALL_FRONTAL" / "A.J._Buckley", list(range(1, 9)), size=40)
    stills[0].write_bytes(b"not a jpeg")
    for utt in (1, 2):
        write_wav(root / "wav" / "id10001" / "-abcdefghij" / f"{utt:05d}.wav", seed=utt)
    scan = scan_voxceleb1(root, read_meta(root / "vox1_meta.csv"))
    assert {c.face_source for c in scan.clips} == {"stills"}
    settings = ExtractSettings(frames_per_clip=7, face_size=32)
    frames = []
    for clip in scan.clips:
        sample = extract_clip(clip, "val", {"gender": "m"}, settings)
        assert len([m for m in sample.members if m.endswith(".jpg")]) == 7
        frames.append(sample.members["json"])
        assert all(d["kind"] == "unreadable_image" for d in sample.dropped)
    assert frames[0] != frames[1]


def test_pyav_and_decord_backends_give_the_same_frames_and_audio(tmp_path):
    """Also covers a container without a frame count in its header (mkv): counted first."""
    import av
    from ingest_media import write_mp4

    from pipeline.extract import _decode_frames_decord, _decode_frames_pyav

    mp4 = write_mp4(tmp_path / "a.mp4", seconds=2.0)
    mkv = tmp_path / "a.mkv"
    with av.open(str(mp4)) as src, av.open(str(mkv), "w", format="matroska") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    with av.open(str(mkv)) as c:
        assert c.streams.video[0].frames == 0
    for mode in ("even", "random"):
        settings = ExtractSettings(frames_per_clip=5, frame_selection=mode)
        frames_av, idx_av = _decode_frames_pyav(str(mp4), settings, "k")
        frames_dc, idx_dc = _decode_frames_decord(str(mp4), settings, "k")
        frames_mkv, idx_mkv = _decode_frames_pyav(str(mkv), settings, "k")
        assert idx_av == idx_dc == idx_mkv
        np.testing.assert_array_equal(np.stack(frames_av), np.stack(frames_dc))
        np.testing.assert_array_equal(np.stack(frames_av), np.stack(frames_mkv))
    np.testing.assert_array_equal(read_audio(str(mp4), "pyav"), read_audio(str(mp4), "decord"))


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_truncated_faststart_mp4_is_corrupt_not_silently_short(tmp_path, backend):
    """With the index at the front, a cut file still opens; it must not pass as a short clip."""
    import av

    from pipeline.extract import _decode_frames_decord, _decode_frames_pyav

    path = tmp_path / "fs.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as c:
        v = c.add_stream("libx264", rate=25)
        v.width = v.height = 64
        v.pix_fmt = "yuv420p"
        for _ in range(100):  # noise: large frames, so a cut loses many of them
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    decode = _decode_frames_pyav if backend == "pyav" else _decode_frames_decord
    with pytest.raises(ClipError) as err:
        decode(str(path), ExtractSettings(), "k")
    assert err.value.kind == "corrupt_video"


def _records(n_ids: int, n_clips: int):
    from pipeline.sources import ClipRecord

    return [
        ClipRecord(
            dataset="voxceleb2",
            identity=f"id{i:05d}",
            video="vid",
            clip=f"{c:05d}",
            source=f"mp4/id{i:05d}/vid/{c:05d}.mp4",
            audio_path="x",
            fingerprint=f"{i}-{c}",
        )
        for i in range(n_ids)
        for c in range(n_clips)
    ]


def test_shard_plan_is_deterministic_mixed_and_limit_is_a_random_subset():
    from pipeline.plan import make_split_plan

    clips = _records(10, 10)
    a = make_split_plan("voxceleb2", "train", clips, {}, {"s": 1}, seed=0, shard_samples=20, limit=None)
    b = make_split_plan("voxceleb2", "train", list(reversed(clips)), {}, {"s": 1}, seed=0, shard_samples=20, limit=None)
    assert [[c.key for c in s.clips] for s in a.shards] == [[c.key for c in s.clips] for s in b.shards]
    assert a.fingerprint == b.fingerprint and len(a.shards) == 5
    assert all(len({c.identity for c in s.clips}) >= 5 for s in a.shards)  # each shard mixes ids
    other = make_split_plan("voxceleb2", "train", clips, {}, {"s": 1}, seed=1, shard_samples=20, limit=None)
    assert other.fingerprint != a.fingerprint
    limited = make_split_plan("voxceleb2", "train", clips, {}, {"s": 1}, seed=0, shard_samples=20, limit=10)
    assert [c.key for c in limited.shards[0].clips] == [c.key for c in a.shards[0].clips[:10]]
    assert len({c.identity for c in limited.shards[0].clips}) >= 5
    changed = clips[:-1] + [dataclasses.replace(clips[-1], fingerprint="new size")]
    assert (
        make_split_plan("voxceleb2", "train", changed, {}, {"s": 1}, seed=0, shard_samples=20, limit=None).fingerprint
        != a.fingerprint
    )


def test_crop_boxes_crop_the_box_region(tmp_path):
    from ingest_media import write_mp4

    from pipeline.extract import _read_video_frames
    from pipeline.sources import ClipRecord

    mp4 = write_mp4(tmp_path / "c.mp4", seconds=1.0, size=128)
    txt = write_track(tmp_path / "c.txt", "id00012", "vid", 100, 25, normalised=True)
    record = ClipRecord(
        dataset="voxceleb2",
        identity="id00012",
        video="vid",
        clip="00001",
        source="c.mp4",
        audio_path=str(mp4),
        video_path=str(mp4),
        box_path=str(txt),
    )
    track = read_track(txt)
    plain, idx = _read_video_frames(record, ExtractSettings(frames_per_clip=2, face_size=32), track)
    cropped, _ = _read_video_frames(record, ExtractSettings(frames_per_clip=2, face_size=32, crop_boxes=True), track)
    from pipeline.extract import _decode_frames_pyav

    frames, _ = _decode_frames_pyav(str(mp4), ExtractSettings(frames_per_clip=2), "vox2_id00012_vid_00001")
    for frame, face, i in zip(frames, cropped, idx):
        box = track.pixel_box(track.box_for_index(i), 128, 128)  # x .3 y .1 w .4 h .7 of 128
        assert box == (38, 13, 90, 102)
        np.testing.assert_array_equal(face, to_face_crop(frame, 32, box))
    assert not np.array_equal(np.stack(plain), np.stack(cropped))


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_wav_subtype_reads_as_the_same_int16_samples(tmp_path, subtype):
    """A FLOAT WAV used to come out as zeros (libsndfile's int16 read does not scale floats) and was
    skipped as silent_audio."""
    import soundfile as sf

    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float64)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, 16000, subtype=subtype)
    got = read_audio(str(path))
    expected = np.round(x * 32768).astype(np.int16)
    assert np.abs(got.astype(int) - expected).max() <= 1  # PCM_16 quantisation only


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_stereo_downmix_is_the_channel_mean_in_every_container(tmp_path, backend):
    """One downmix rule: the same stereo recording has the same level from a WAV and from an m4a
    (decord's mono reader used FFmpeg's matrix: 3 dB above the WAV's channel mean)."""
    import av
    import soundfile as sf

    t = np.arange(32000) / 16000
    left = 0.2 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, 0.5 * left], axis=1)  # correlated channels, mean = 0.75 left
    wav = tmp_path / "s.wav"
    sf.write(wav, stereo, 16000, subtype="PCM_16")
    m4a = tmp_path / "s.m4a"
    with av.open(str(m4a), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(stereo.T.astype(np.float32).copy(), format="fltp", layout="stereo")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    rms = lambda a: float(np.sqrt(np.mean(a[4000:28000].astype(np.float64) ** 2)))  # noqa: E731
    from_wav, from_m4a = rms(read_audio(str(wav))), rms(read_audio(str(m4a), backend))
    assert from_wav == pytest.approx(0.75 * 0.2 / np.sqrt(2) * 32768, rel=0.01)
    assert 20 * np.log10(from_m4a / from_wav) == pytest.approx(0.0, abs=0.5)  # decord was +3 dB
