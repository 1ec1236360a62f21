"""CPU decoding equals independent reference decodes; DALI CPU equals PIL; audio crops are exact."""

import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from shards.decode import decode_face, decode_voice_crop
from shards.features import LogMel, faces_to_tensor
from shards.format import read_sample_at
from shards.loader import TupleLoader
from shards.stream import BadSample
from shards.testing import SyntheticSpec, face_jpeg, make_shard_set, voice_flac, voice_wav


@pytest.fixture(scope="module", params=["wav", "flac"])
def shard_dir(tmp_path_factory, request):
    spec = SyntheticSpec(
        num_identities=6,
        videos_per_identity=2,
        clips_per_video=3,
        num_faces=3,
        face_size=40,
        audio_format=request.param,
    )
    return str(make_shard_set(tmp_path_factory.mktemp("decode") / "s", spec))


def test_decode_face_equals_pil_and_rejects_garbage():
    data = face_jpeg(3, 1, 48, np.random.default_rng(0))
    ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode_face(data), ref) and ref.shape == (48, 48, 3)
    with pytest.raises(BadSample) as err:
        decode_face(b"\xff\xd8 not a jpeg" * 10, key="k1")
    assert err.value.reason == "undecodable_jpeg" and "k1" in str(err.value)


def test_dali_cpu_decode_equals_pil_within_jpeg_tolerance():
    pytest.importorskip("nvidia.dali")
    from shards.dali_decode import DaliFaceDecoder

    rng = np.random.default_rng(1)
    jpegs = [face_jpeg(i, i, 56, rng) for i in range(5)]
    dali = DaliFaceDecoder("cpu", max_batch_size=4, num_threads=1)(jpegs)  # 2 DALI runs
    pil = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs])
    assert dali.shape == (5, 56, 56, 3) and dali.dtype == torch.uint8
    diff = np.abs(dali.numpy().astype(int) - pil)
    assert diff.max() <= 2 and diff.mean() < 0.2  # both libjpeg-turbo; allow IDCT rounding


@pytest.mark.parametrize("encode", [voice_flac, voice_wav])
def test_voice_crop_is_an_exact_slice_of_the_full_decode(encode):
    data = encode(2, 1.3, 16000, np.random.default_rng(2))
    full, _ = sf.read(io.BytesIO(data), dtype="float32")
    crop = 8000
    free = len(full) - crop + 1
    for u in (0.0, 0.37, 0.999999):
        start = int(u * free)
        np.testing.assert_array_equal(decode_voice_crop(data, crop, u, 16000), full[start : start + crop])


@pytest.mark.parametrize("encode", [voice_flac, voice_wav])
def test_short_clip_is_loop_padded_not_zero_padded(encode):
    data = encode(1, 0.3, 16000, np.random.default_rng(3))
    full, _ = sf.read(io.BytesIO(data), dtype="float32")
    out = decode_voice_crop(data, 16000, 0.5, 16000)
    np.testing.assert_array_equal(out, np.tile(full, 16000 // len(full) + 1)[:16000])


def test_bad_audio_is_reported_with_a_reason():
    with pytest.raises(BadSample) as err:
        decode_voice_crop(b"fLaC" + b"\0" * 100, 1600, 0.0, 16000)
    assert err.value.reason == "undecodable_audio"
    data = voice_flac(1, 0.5, 8000, np.random.default_rng(4))
    with pytest.raises(BadSample) as err:
        decode_voice_crop(data, 1600, 0.0, 16000)
    assert err.value.reason == "bad_audio" and "8000 Hz" in str(err.value)


def _reference_rows(shard_dir, loader, batch):
    """Decode each face/voice of a batch independently from the shard, by key."""
    rows = {json.loads(line)["key"]: json.loads(line) for line in open(f"{shard_dir}/manifest.jsonl")}
    logmel = LogMel()
    face_rows, voice_rows = {}, {}
    keys_faces = batch["candidate_key"] if batch["direction"] == "v2f" else [[k] for k in batch["anchor_key"]]
    idx_faces = batch["candidate_index"] if batch["direction"] == "v2f" else batch["anchor_index"][:, None]
    for krow, irow in zip(keys_faces, idx_faces.tolist()):
        for key, i in zip(krow, irow):
            r = rows[key]
            _, members = read_sample_at(f"{shard_dir}/{r['shard']}", r["offset"], r["size"])
            jpg = members[f"f{loader.parser.frame_index(key)}.jpg"]
            face_rows[i] = faces_to_tensor(np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))[None], 32)[0]
    keys_voices = [[k] for k in batch["anchor_key"]] if batch["direction"] == "v2f" else batch["candidate_key"]
    idx_voices = batch["anchor_index"][:, None] if batch["direction"] == "v2f" else batch["candidate_index"]
    for krow, irow in zip(keys_voices, idx_voices.tolist()):
        for key, i in zip(krow, irow):
            r = rows[key]
            _, members = read_sample_at(f"{shard_dir}/{r['shard']}", r["offset"], r["size"])
            full, _ = sf.read(io.BytesIO(members.get("wav") or members["flac"]), dtype="float32")
            voice_rows[i] = logmel(torch.from_numpy(np.resize(full, 32000))[None])[0]
    return face_rows, voice_rows


@pytest.mark.parametrize("direction", ["v2f", "f2v"])
def test_loader_rows_equal_reference_decode(shard_dir, direction):
    # crop 2 s > every clip (<= 1.6 s): the voice is the loop-padded clip, independent of the crop start
    loader = TupleLoader(
        dict(
            shards=[shard_dir],
            batch_size=3,
            k=3,
            buffer_size=12,
            crop_seconds=2.0,
            face_size=32,
            direction=direction,
            frame="random",
        )
    )
    for batch in loader:
        faces, voices = _reference_rows(shard_dir, loader, batch)
        assert set(faces) == set(range(batch["faces"].shape[0]))
        assert set(voices) == set(range(batch["voices"].shape[0]))
        for i, t in faces.items():
            torch.testing.assert_close(batch["faces"][i], t, atol=1e-6, rtol=0)
        for i, t in voices.items():
            torch.testing.assert_close(batch["voices"][i], t, atol=1e-4, rtol=1e-5)


def test_loader_with_dali_cpu_equals_pil(shard_dir):
    pytest.importorskip("nvidia.dali")
    cfg = dict(shards=[shard_dir], batch_size=3, k=2, buffer_size=12, crop_seconds=0.5)
    pil = list(TupleLoader({**cfg, "face_decoder": "pil"}))
    dali_loader = TupleLoader({**cfg, "face_decoder": "dali"})
    dali = list(dali_loader)
    assert dali_loader.report()["face_decoder"] == "dali-cpu"
    for a, b in zip(pil, dali, strict=True):
        assert a["candidate_key"] == b["candidate_key"]
        assert (a["faces"] - b["faces"]).abs().max().item() <= 2 * 2 / 255 + 1e-6
        # DALI runs in threads (log-mel in this process, with its torch threads), PIL in 1-thread
        # workers: the log-mel GEMMs may block differently, so equal to float32 rounding
        torch.testing.assert_close(a["voices"], b["voices"], rtol=0, atol=1e-5)
