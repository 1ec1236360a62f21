"""voxface.load_matcher / voxface-match / voxface-export on a user's own files.

The matcher's scores are checked against an independent computation: the same files go through
ingest's own extraction (`pipeline.extract.extract_clip`), are decoded as `build_eval_store`
decodes shard members, written into a real evaluation store and scored by `launch.eval`'s
`ModelScorer` on the model `launch.checkpoint.load_model` builds. Equal scores mean a user's files
are prepared and scored exactly as evaluation prepares and scores ingested items.
"""

import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from ingest_media import write_m4a
from PIL import Image

import models
import voxface
from launch.checkpoint import CheckpointError, load_model, model_payload
from launch.eval.inputs import EvalInputs, ItemLoader
from launch.eval.scoring import ModelScorer
from pipeline.extract import ExtractSettings, extract_clip
from pipeline.sources import ClipRecord
from shards.config import LoaderConfig
from shards.evalstore import EvalStore, EvalStoreWriter
from shards.format import audio_member
from voxface import match as match_cli

INGEST_FACE, JPEG_Q = 48, 85


def _checkpoint(folder, name, shards, direction="both", k=2, seed=0):
    torch.manual_seed(seed)
    cfg = {"name": name, **models.tiny_overrides(name), "num_candidates": k}
    model = models.build_model(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"shards": [str(shards)], "face_size": 32, "crop_seconds": 0.6, "direction": direction, "k": k}
    torch.save(model_payload(model, cfg, data, epoch=3.0, step=30), folder / "model.pt")
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three voices (stereo 44.1 kHz float wav, 8 kHz flac, 16 kHz AAC m4a) and three face images
    of odd sizes, plus checkpoints whose training shards say ingest made 48 px JPEG-85 crops."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("match")
    shards = root / "shards/voxceleb1/train"
    shards.mkdir(parents=True)
    (shards / "index.json").write_text(
        json.dumps(
            {
                "face_size": INGEST_FACE,
                "num_identities": 7,
                "num_samples": 40,
                "ingest": {"face_size": INGEST_FACE, "jpeg_quality": JPEG_Q},
            }
        )
    )
    rng = np.random.default_rng(0)
    t = np.arange(int(44100 * 1.3)) / 44100
    left, right = 0.3 * np.sin(2 * np.pi * 180 * t), 0.2 * np.sin(2 * np.pi * 260 * t) + 0.05 * rng.normal(size=t.size)
    sf.write(root / "a_stereo.wav", np.stack([left, right], 1).astype(np.float32), 44100, subtype="FLOAT")
    t8 = np.arange(int(8000 * 0.9)) / 8000
    sf.write(root / "b_8k.flac", 0.4 * np.sin(2 * np.pi * 300 * t8) + 0.05 * rng.normal(size=t8.size), 8000)
    write_m4a(root / "c.m4a", seconds=1.1, freq=410.0, seed=3)
    voices = [root / "a_stereo.wav", root / "b_8k.flac", root / "c.m4a"]
    faces = []
    for i, (h, w) in enumerate([(120, 90), (300, 300), (20, 33)]):
        img = (rng.integers(0, 90, (h, w, 3)) + 50 * i + np.linspace(0, 60, w)[None, :, None]).astype(np.uint8)
        path = root / (f"face{i}.png" if i != 1 else f"face{i}.jpg")
        Image.fromarray(img).save(path)
        faces.append(path)
    ckpts = {
        "baseline": _checkpoint(root / "ck_base", "baseline", shards),
        "bianet": _checkpoint(root / "ck_bia", "bianet", shards, seed=1),
        "aicanet": _checkpoint(root / "ck_aica", "aicanet", shards, seed=2),
    }
    return root, voices, faces, ckpts


def _eval_store(root, voices, faces):
    """The files through ingest's extraction into a real evaluation store (item i = voice i + face i)."""
    settings = ExtractSettings(frames_per_clip=1, face_size=INGEST_FACE, jpeg_quality=JPEG_Q, min_face_size=0)
    writer = EvalStoreWriter(root / "store.zarr", num_faces=1, face_size=INGEST_FACE)
    keys = []
    for i, (voice, face) in enumerate(zip(voices, faces)):
        record = ClipRecord(
            "voxceleb1",
            f"id{10001 + i}",
            "vid",
            f"{i + 1:05d}",
            source=voice.name,
            audio_path=str(voice),
            frame_paths=(str(face),),
            face_source="stills",
        )
        sample = extract_clip(record, "test", {}, settings)
        members = sample.members
        # decoded exactly as pipeline.shardset.build_eval_store decodes shard members
        face_px = np.asarray(Image.open(io.BytesIO(members["f0.jpg"])).convert("RGB"))[None]
        audio, _ = sf.read(io.BytesIO(audio_member(members)), dtype="int16")
        writer.append(
            key=sample.key, identity=record.identity, video="vid", clip=record.clip, faces=face_px, audio=audio
        )
        keys.append(sample.key)
    return EvalStore(writer.close()), keys


@pytest.mark.parametrize("name", ["baseline", "bianet", "aicanet"])
def test_scores_equal_evaluation_on_the_same_items(files, tmp_path, name):
    root, voices, faces, ckpts = files
    store, keys = _eval_store(tmp_path, voices, faces)
    model = load_model(ckpts[name])
    payload = torch.load(ckpts[name] / "model.pt", weights_only=True)
    loader = ItemLoader(store, EvalInputs.from_data_config(payload["data_config"]))
    matcher = voxface.load_matcher(ckpts[name], device="cpu")

    # K = 2, the direction it was trained for: the model's own head, as evaluation's head scorer
    got = matcher.match(voice=voices[0], faces=faces[:2])
    want, method = ModelScorer(model, loader, 1, "head", progress=False).score("v2f", [keys[0]], [keys[:2]])
    assert method == "head" and got.method.startswith("head (K=2")
    by_path = {c.path: c.score for c in got.candidates}
    np.testing.assert_allclose([by_path[str(f)] for f in faces[:2]], want[0], rtol=0, atol=2e-5)

    # K = 3: no head for it, so the embedding score (BIANet: its counterfactual cos(h^) - w cos(h~))
    got = matcher.match(face=faces[2], voices=voices)
    want, _ = ModelScorer(model, loader, 1, "embedding", progress=False).score("f2v", [keys[2]], [keys])
    assert got.method.startswith("embedding") and ("counterfactual" in got.method) == (name == "bianet")
    by_path = {c.path: c.score for c in got.candidates}
    np.testing.assert_allclose([by_path[str(v)] for v in voices], want[0], rtol=0, atol=2e-5)
    # ranked best first, ranks 1..N
    assert [c.rank for c in got.candidates] == [1, 2, 3]
    assert [c.score for c in got.candidates] == sorted(by_path.values(), reverse=True)


def test_preprocessing_follows_the_training_shards_and_checkpoint(files):
    root, voices, faces, ckpts = files
    prep = voxface.load_matcher(ckpts["baseline"], device="cpu").preprocessing
    assert (prep["ingest_face_size"], prep["jpeg_quality"], prep["face_size"]) == (INGEST_FACE, JPEG_Q, 32)
    assert prep["audio_seconds"] == 0.6 and prep["log_mel"]["n_mels"] == 40 and prep["sample_rate"] == 16000
    crop = voxface.read_face(faces[2], INGEST_FACE, JPEG_Q)  # a 20 x 33 image
    assert crop.shape == (INGEST_FACE, INGEST_FACE, 3) and crop.dtype == np.uint8
    wave = voxface.read_voice(voices[0])  # 1.3 s of 44.1 kHz stereo
    assert wave.dtype == np.int16 and abs(wave.size - int(1.3 * 16000)) <= 2
    # the one downmix rule: the channel mean (not FFmpeg's mono matrix)
    data, rate = sf.read(voices[0], dtype="float64")
    from scipy.signal import resample_poly

    mean = resample_poly(data.mean(axis=1), 160, 441)
    np.testing.assert_allclose(wave / 32768.0, mean[: wave.size], atol=2 / 32768)


def test_ranking_is_per_candidate_for_pair_independent_models(files):
    """Baseline and BIANet embeddings do not depend on the other candidates: order and duplicates
    change nothing but the order of the list."""
    root, voices, faces, ckpts = files
    m = voxface.load_matcher(ckpts["bianet"], device="cpu", scoring="embedding")
    a = {c.path: c.score for c in m.match(voice=voices[1], faces=faces).candidates}
    b = m.match(voice=voices[1], faces=[faces[2], faces[0], faces[1], faces[0]])
    assert len(b.candidates) == 4
    for c in b.candidates:
        assert c.score == pytest.approx(a[c.path], abs=2e-5)
    twins = [c for c in b.candidates if c.path == str(faces[0])]
    assert twins[1].rank == twins[0].rank + 1 and twins[0].score == pytest.approx(twins[1].score, abs=1e-6)
    assert m.match(voice=voices[1], faces=faces).best.path == max(a, key=a.get)


def test_bad_files_are_skipped_with_one_line_each(files, tmp_path):
    root, voices, faces, ckpts = files
    (tmp_path / "garbage.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    (tmp_path / "notes.txt").write_text("hello")
    m = voxface.load_matcher(ckpts["baseline"], device="cpu")
    r = m.match(voice=voices[0], faces=[faces[0], tmp_path / "garbage.jpg", tmp_path / "gone.png", faces[1]])
    assert [c.path for c in r.candidates if c.path in map(str, faces)] and len(r.candidates) == 2
    reasons = {b.path: b.reason for b in r.skipped}
    assert "cannot decode it as an image" in reasons[str(tmp_path / "garbage.jpg")]
    assert reasons[str(tmp_path / "gone.png")] == "no such file"
    for bad, expect in (("empty.wav", "empty"), ("silent.wav", "silence"), ("notes.txt", "audio")):
        with pytest.raises(voxface.MatchInputError, match=expect) as err:
            m.match(voice=tmp_path / bad, faces=faces)
        assert "\n" not in str(err.value)
    with pytest.raises(voxface.MatchInputError, match="none of the 2 face"):
        m.match(voice=voices[0], faces=[tmp_path / "garbage.jpg", tmp_path / "gone.png"])
    with pytest.raises(voxface.MatchInputError, match="give voice= with faces="):
        m.match(voice=voices[0], voices=voices)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        voxface.load_matcher(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="not a checkpoint torch loads with weights_only=True") as err:
        voxface.load_matcher(faces[1])  # a JPEG given as the checkpoint
    assert "\n" not in str(err.value)


def test_cli_table_json_folders_and_bad_files(files, tmp_path, capsys):
    root, voices, faces, ckpts = files
    face_dir = tmp_path / "faces"
    face_dir.mkdir()
    for f in faces:
        (face_dir / f.name).write_bytes(f.read_bytes())
    (face_dir / "broken.png").write_bytes(b"\x89PNG broken")
    (face_dir / "readme.txt").write_text("ignored: not an image name")
    voice_dir = tmp_path / "voices"
    voice_dir.mkdir()
    for v in voices[:2]:
        (voice_dir / v.name).write_bytes(v.read_bytes())
    ck = str(ckpts["baseline"])
    rc = match_cli.main(["--checkpoint", ck, "--voice", str(voices[2]), "--faces", str(face_dir), "--top", "2"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in out + err
    assert err.strip().splitlines() == [f"skipped: {face_dir / 'broken.png'}: " + err.split(": ", 2)[2].strip()]
    assert "scored by: embedding (cosine)" in out and "... 1 more" in out and out.count("\n   ") >= 2

    rc = match_cli.main(["--checkpoint", ck, "--voice", str(voice_dir), "--faces", *map(str, faces[:2]), "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert rc == 0 and err == "" and len(doc["results"]) == 2
    assert all(r["method"] == "head (K=2)" and len(r["candidates"]) == 2 for r in doc["results"])

    rc = match_cli.main(["--checkpoint", str(tmp_path / "nope"), "--voice", str(voices[0]), "--faces", str(faces[0])])
    out, err = capsys.readouterr()
    assert rc == 2 and err.startswith("error: checkpoint not found") and len(err.strip().splitlines()) == 1
    rc = match_cli.main(["--checkpoint", ck, "--voice", str(tmp_path / "missing.wav"), "--faces", str(faces[0])])
    out, err = capsys.readouterr()
    assert rc == 2 and "skipped: " in err and "no such file" in err and "Traceback" not in err


def test_hub_export_loads_offline_with_the_same_scores(files, tmp_path):
    from safetensors.numpy import load_file

    from launch.shareable import read_hub_folder

    root, voices, faces, ckpts = files
    run = tmp_path / "run"
    (run / "checkpoints/best").mkdir(parents=True)
    (run / "checkpoints/best/model.pt").write_bytes((ckpts["bianet"] / "model.pt").read_bytes())
    hub = voxface.export_hub(run, tmp_path / "hub")
    assert sorted(p.name for p in hub.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    text = (hub / "config.json").read_text()
    assert str(tmp_path) not in text and str(root) not in text  # no machine paths
    config = json.loads(text)
    assert set(config["model_config"]) == set(models.DEFAULTS["bianet"])  # every default filled
    assert set(config["data_config"]) == set(LoaderConfig().to_dict())
    assert config["data_config"]["shards"] == ["voxceleb1/train"]
    assert config["training"]["data"][0]["identities"] == 7
    assert config["preprocessing"]["ingest_settings_from"] == "voxceleb1/train/index.json"
    assert set(load_file(str(hub / "model.safetensors"))) == set(
        torch.load(ckpts["bianet"] / "model.pt", weights_only=True)["state_dict"]
    )  # any safetensors reader

    a = voxface.load_matcher(run, device="cpu")
    b = voxface.load_matcher(hub, device="cpu")
    assert b.preprocessing["ingest_face_size"] == INGEST_FACE and b.payload["source"] == "hub"
    for kwargs in ({"voice": voices[0], "faces": faces[:2]}, {"face": faces[1], "voices": voices}):
        ra, rb = a.match(**kwargs), b.match(**kwargs)
        assert ra.method == rb.method
        assert [(c.path, c.score) for c in ra.candidates] == [(c.path, c.score) for c in rb.candidates]

    # a changed weight file is refused with one line, not loaded
    from safetensors.torch import load_file as load_t
    from safetensors.torch import save_file

    state = load_t(str(hub / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = state[name] + 1
    save_file(state, str(hub / "model.safetensors"))
    with pytest.raises(CheckpointError, match="do not match the sha256"):
        read_hub_folder(hub)
    with pytest.raises(CheckpointError, match="holds other files"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy/data.csv").write_text("x")
        voxface.export_hub(run, tmp_path / "busy")


@pytest.mark.slow
def test_a_trained_tiny_model_ranks_the_true_pair_first(tmp_path):
    """Three 'people' (a voice timbre each, a face colour each); a tiny baseline trained for 40
    steps on tensors the matcher prepared ranks each person's own face / voice first, with its
    K = 2 head in both directions and with embeddings for K = 3."""
    from models import from_dense

    torch.set_num_threads(1)  # 2 shared cores: threads only contend (5 s instead of 90 s)
    torch.manual_seed(0)
    t = np.arange(16000) / 16000
    voices, faces = [], []
    for i, (f0, colour) in enumerate([(140, (200, 60, 60)), (420, (60, 200, 60)), (900, (60, 60, 200))]):
        bursts = np.sin(2 * np.pi * 3 * t) > 0
        wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 2.3 * f0 * t) * bursts
        sf.write(tmp_path / f"voice{i}.wav", wave, 16000)
        Image.fromarray(np.full((64, 64, 3), colour, np.uint8)).save(tmp_path / f"face{i}.png")
        voices.append(tmp_path / f"voice{i}.wav")
        faces.append(tmp_path / f"face{i}.png")
    cfg = {"name": "baseline", **models.tiny_overrides("baseline"), "num_candidates": 2}
    data = {"face_size": 32, "crop_seconds": 0.5, "direction": "both"}
    model = models.build_model(cfg)
    torch.save(model_payload(model, cfg, data, 0.0, 0), tmp_path / "model.pt")
    prep = voxface.load_matcher(tmp_path, device="cpu")
    V = torch.stack([prep.loader.voice(prep.items.key_for(v)) for v in voices])
    F = torch.stack([prep.loader.face(prep.items.key_for(f)) for f in faces])
    g = torch.Generator().manual_seed(0)
    groups = model.param_groups()
    opt = torch.optim.Adam([p for k, ps in groups.items() if k != "discriminator" for p in ps], lr=1e-3)
    disc = torch.optim.Adam(groups["discriminator"], lr=1e-3)
    model.train()
    for step in range(40):
        a = torch.randint(3, (8,), generator=g)
        other = (a + torch.randint(1, 3, (8,), generator=g)) % 3
        label = torch.randint(2, (8,), generator=g)
        c = torch.stack([torch.where(label == 0, a, other), torch.where(label == 1, a, other)], 1)
        batch = from_dense(V[a], F[c], "v2f", label) if step % 2 == 0 else from_dense(F[a], V[c], "f2v", label)
        terms = model.loss(model(batch), batch, epoch=0.0)
        opt.zero_grad()
        disc.zero_grad()
        (terms["total"] + terms["disc_total"]).backward()
        opt.step()
        disc.step()
    torch.save(model_payload(model, cfg, data, 1.0, 40), tmp_path / "model.pt")
    m = voxface.load_matcher(tmp_path, device="cpu")
    for i in range(3):
        for j in {0, 1, 2} - {i}:
            r = m.match(voice=voices[i], faces=[faces[j], faces[i]])
            assert r.method == "head (K=2)" and r.best.path == str(faces[i])
            r = m.match(face=faces[i], voices=[voices[i], voices[j]])
            assert r.method == "head (K=2)" and r.best.path == str(voices[i])
        r = m.match(voice=voices[i], faces=faces)
        assert r.method == "embedding (cosine)" and r.best.path == str(faces[i])


def test_model_card_carries_the_runs_evaluation(files, tmp_path):
    """Export after `launch.evaluate --out <run>/eval/<protocol>` (as make demo does): the card has
    the table with its scorers, the protocol and the full trial checksums."""
    from eval_fakes import build_store

    from launch import evaluate

    root, voices, faces, ckpts = files
    build_store(tmp_path / "data/voxceleb1/test/eval.zarr", n_ids=4, seconds=0.3)
    run = tmp_path / "run"
    (run / "checkpoints/best").mkdir(parents=True)
    (run / "checkpoints/best/model.pt").write_bytes((ckpts["baseline"] / "model.pt").read_bytes())
    assert (
        evaluate.main(
            [
                "--checkpoint",
                str(run),
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(run / "eval/wen1251"),
                "--max-k",
                "3",
                "--probes-per-identity",
                "1",
                "--bootstrap",
                "5",
                "--no-progress",
                "--scoring",
                "auto",
                "--allow-seen-identities",
            ]
        )
        == 0
    )
    meta = json.loads((run / "eval/wen1251/results.json").read_text())["meta"]
    hub = voxface.export_hub(run / "checkpoints/best", tmp_path / "hub")
    card = (hub / "README.md").read_text()
    assert "| Method | Binary V-F | Binary F-V |" in card and "| run | head (K=2 model) |" in card
    assert "Protocol: `wen1251`" in card and meta["trials"]["test"]["sha256"] in card
    assert "`voxceleb1/train`: identities 7, samples 40" in card and "face crop is expected" in card
    # evaluation accepts the Hub folder too, and scores every trial as the checkpoint did
    assert (
        evaluate.main(
            [
                "--checkpoint",
                str(hub),
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "ev"),
                "--trials",
                str(run / "eval/wen1251/trials/test.json"),
                "--bootstrap",
                "5",
                "--no-progress",
                "--scoring",
                "auto",
                "--allow-seen-identities",
            ]
        )
        == 0
    )
    a = json.loads((run / "eval/wen1251/results.json").read_text())["results"]["run"]["directions"]
    b = json.loads((tmp_path / "ev/results.json").read_text())["results"]["hub"]["directions"]
    for d in ("v2f", "f2v"):
        assert {k: m["acc"] for k, m in a[d]["matching"].items()} == {k: m["acc"] for k, m in b[d]["matching"].items()}
        assert a[d]["verification"]["auc"] == b[d]["verification"]["auc"]


def test_voxface_is_the_top_layer():
    """pipeline, shards, models and launch never import voxface (docs/ARCHITECTURE.md)."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    offenders = []
    for package in ("pipeline", "shards", "models", "launch"):
        for path in (repo / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [f"{path.relative_to(repo)}: {n}" for n in names if n.split(".")[0] == "voxface"]
    assert offenders == []
