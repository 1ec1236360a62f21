"""End-to-end: `launch.evaluate` and `launch.retrieve` on tiny stores and tiny checkpoints."""

import json

import pytest
import torch
from eval_fakes import build_store, tiny_checkpoint

from launch import evaluate, retrieve
from pipeline.bundled import META_DIR

FAST = ["--probes-per-identity", "2", "--bootstrap", "20", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalcli")
    build_store(root / "data/voxceleb1/test/eval.zarr", n_ids=11, seconds=0.3)
    build_store(root / "data/voxceleb1/val/eval.zarr", n_ids=10, first_id=10101, seconds=0.3)
    train = root / "data/voxceleb1/train"
    train.mkdir(parents=True)
    (train / "index.json").write_text(json.dumps({"identities": {f"id{10301 + i}": "m" for i in range(5)}}))
    ckpts = [tiny_checkpoint(root / "base", "baseline"), tiny_checkpoint(root / "bia", "bianet", seed=1)]
    return root, ckpts


def _metrics(path):
    res = json.loads(path.read_text())["results"]
    for r in res.values():
        for d in r["directions"].values():
            d.get("verification", {}).pop("threshold", None)  # a score midpoint, float noise
        r.pop("seconds", None)
    return res


def test_comparison_run_writes_tables_plot_and_summary(setup, capsys):
    root, ckpts = setup
    out = root / "out"
    assert (
        evaluate.main(
            [
                "--checkpoint",
                *map(str, ckpts),
                "--names",
                "Baseline",
                "BIANet",
                "--data",
                str(root / "data"),
                "--protocol",
                "wen1251",
                "--out",
                str(out),
                "--scoring",
                "auto",
                *FAST,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "identity disjointness: ok (5 training identities in voxceleb1/train)" in printed
    assert "Binary V-F" in printed and "Baseline" in printed and "BIANet" in printed
    md = (out / "results.md").read_text()
    assert "| Method | Binary V-F | Binary F-V | Multi-way V-F | Multi-way F-V | Verification V-F |" in md
    assert md.count("| Baseline |") == 5 and "K=10" in md  # main, scorer, ROC, and the V-F + F-V curve rows
    assert "| Baseline | head (K=2 model) | head (K=2 model) | embedding (K=2 model) |" in md
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,metric,direction,k,value")
    # 2 checkpoints x 2 directions x (9 K values + 3 verification metrics), scorer and source per line
    assert len(csv_lines) == 1 + 2 * 2 * (9 + 3)
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["results"]) == {"Baseline", "BIANet"}
    assert doc["meta"]["trials"]["test"]["identities"] == 11
    ver = doc["results"]["Baseline"]["directions"]["v2f"]["verification"]
    assert ver["threshold_source"] == "voxceleb1/val" and 0 <= ver["acc"] <= 1
    assert (out / "accuracy_vs_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "trials/test.json").exists() and (out / "trials/val.json").exists()


def test_same_trial_file_same_numbers_whatever_the_batch_size(setup):
    root, ckpts = setup
    common = ["--checkpoint", str(ckpts[0]), "--data", str(root / "data"), *FAST, "--max-k", "4"]
    evaluate.main(common + ["--out", str(root / "bs3"), "--batch-size", "3"])
    evaluate.main(
        common
        + [
            "--out",
            str(root / "bs50"),
            "--batch-size",
            "50",
            "--trials",
            str(root / "bs3/trials/test.json"),
            "--val-trials",
            str(root / "bs3/trials/val.json"),
        ]
    )
    assert _metrics(root / "bs3/results.json") == _metrics(root / "bs50/results.json")
    # a trial file made for another store is refused with a clear message
    with pytest.raises(SystemExit, match="made for a different evaluation store"):
        evaluate.main(common + ["--out", str(root / "bad"), "--trials", str(root / "bs3/trials/val.json")])


def test_seen_identities_are_refused(setup, tmp_path):
    root, ckpts = setup
    train = tmp_path / "train"
    train.mkdir()
    (train / "index.json").write_text(json.dumps({"identities": ["id10003"]}))
    with pytest.raises(SystemExit, match="also occur in the training split"):
        evaluate.main(
            [
                "--trials-only",
                "--data",
                str(root / "data"),
                "--train-split",
                str(train),
                "--out",
                str(tmp_path / "o"),
                *FAST,
            ]
        )


def test_identities_a_checkpoint_was_trained_on_beyond_the_protocol_split_are_refused(setup, tmp_path):
    """The demo trains on VoxCeleb1 train + VoxCeleb2 dev: the check must follow the checkpoint's
    own `data_config["shards"]`, not only the protocol's train split."""
    import models
    from launch.checkpoint import model_payload

    root, _ = setup
    extra = tmp_path / "extra_train"
    extra.mkdir()
    (extra / "index.json").write_text(json.dumps({"identities": {"id10003": "m"}}))  # a test identity
    cfg = {"name": "baseline", **models.tiny_overrides("baseline"), "num_candidates": 2}
    (tmp_path / "ck").mkdir()
    torch.save(
        model_payload(
            models.build_model(cfg),
            cfg,
            {"face_size": 32, "crop_seconds": 0.5, "shards": [str(root / "data/voxceleb1/train"), str(extra)]},
            epoch=1.0,
            step=1,
        ),
        tmp_path / "ck" / "model.pt",
    )
    with pytest.raises(SystemExit, match="also occur in the training split"):
        evaluate.main(
            ["--checkpoint", str(tmp_path / "ck"), "--data", str(root / "data"), "--out", str(tmp_path / "o"), *FAST]
        )


def test_cross_dataset_vox2test_uses_vox1_val_threshold(setup, tmp_path):
    root, ckpts = setup
    data = tmp_path / "data"
    build_store(data / "voxceleb2/test/eval.zarr", n_ids=10, first_id=17, dataset="voxceleb2", seconds=0.3)
    (data / "voxceleb1").mkdir()
    (data / "voxceleb1/val").symlink_to(root / "data/voxceleb1/val")
    out = tmp_path / "out"
    evaluate.main(
        [
            "--checkpoint",
            str(ckpts[0]),
            "--data",
            str(data),
            "--protocol",
            "vox2test",
            "--out",
            str(out),
            "--scoring",
            "embedding",
            *FAST,
        ]
    )
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["trials"]["test"]["split"] == "voxceleb2/test"
    ver = doc["results"]["base"]["directions"]["f2v"]["verification"]
    assert ver["threshold_source"] == "voxceleb1/val"
    trials = json.loads((out / "trials/test.json").read_text())
    assert trials["match"]["v2f"][0]["probe"].startswith("vox2_id000")


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no test evaluation store"):
        evaluate.main(["--trials-only", "--data", str(tmp_path), "--protocol", "pins"])


def test_exported_embeddings_feed_retrieval(setup, capsys):
    root, ckpts = setup
    out = root / "emb"
    evaluate.main(
        [
            "--checkpoint",
            str(ckpts[0]),
            "--data",
            str(root / "data"),
            "--out",
            str(out),
            "--export-embeddings",
            "--max-k",
            "2",
            *FAST,
        ]
    )
    zarr_path = out / "embeddings/base-test.zarr"
    assert zarr_path.exists()
    capsys.readouterr()
    key = "vox1_id10004_vid003x0_00001"
    assert retrieve.main(["--embeddings", str(zarr_path), "--key", key, "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert "identity id10004" in printed and "first correct face at rank" in printed
    assert key not in printed.split("rank    score")[1]  # the query's own face is not in the gallery
    retrieve.main(["--embeddings", str(zarr_path), "--key", key, "--one-per-identity", "--top", "50"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 11 and len({r[2] for r in rows}) == 11  # each identity exactly once
    # an audio file as the query, embedded with the checkpoint
    import numpy as np
    import soundfile as sf

    wav = root / "query.wav"
    sf.write(wav, (3000 * np.sin(np.arange(8000) / 7)).astype(np.int16), 16000)
    assert (
        retrieve.main(
            ["--embeddings", str(zarr_path), "--audio", str(wav), "--checkpoint", str(ckpts[0]), "--top", "4"]
        )
        == 0
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 4 and [float(r[1]) for r in rows] == sorted((float(r[1]) for r in rows), reverse=True)
    with pytest.raises(SystemExit, match="needs --checkpoint"):
        retrieve.main(["--embeddings", str(zarr_path), "--audio", str(wav)])
    assert retrieve.main(["--embeddings", str(zarr_path), "--map"]) == 0
    printed = capsys.readouterr().out
    assert "retrieval mAP over 44 clips, 11 identities: V->F" in printed
    # the printed values equal mAP computed here, each query's own clip left out of its gallery
    from launch.eval.embeddings import EmbeddingStore
    from launch.eval.metrics import mean_average_precision

    emb, own = EmbeddingStore(zarr_path), list(range(44))
    v2f = mean_average_precision(emb.voice, emb.identities, emb.face, emb.identities, exclude=own)
    f2v = mean_average_precision(emb.face, emb.identities, emb.voice, emb.identities, exclude=own)
    assert f"V->F {100 * v2f:.2f} %, F->V {100 * f2v:.2f} %" in printed


def test_published_list_import_through_the_cli(tmp_path, capsys):

    from launch.eval.importers import load_vox1_names, parse_item, read_rows

    meta = META_DIR
    lst = meta / "cmpc_lists/matching_f2v_U.csv.gz"
    names = load_vox1_names(meta / "vox1_meta.csv")
    items = set()
    for row in read_rows(lst)[:6]:
        for p in row:
            ref = parse_item(p, names)
            items.add((ref.identity, ref.video, ref.clip or "00001"))
    build_store(tmp_path / "data/voxceleb1/test/eval.zarr", items=sorted(items), seconds=0.3)
    out = tmp_path / "out"
    ckpt = tiny_checkpoint(tmp_path / "ck", "baseline")
    evaluate.main(
        [
            "--checkpoint",
            str(ckpt),
            "--data",
            str(tmp_path / "data"),
            "--protocol",
            "pins",
            "--import-list",
            str(lst),
            "--out",
            str(out),
            *FAST,
        ]
    )
    printed = capsys.readouterr().out
    assert "matching_f2v_U.csv.gz: 10000 rows -> " in printed and "identity not in store" in printed
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["trials"]["test"]["source"] == "imported:matching_f2v_U.csv.gz"
    res = doc["results"]["ck"]["directions"]
    assert set(res) == {"f2v"} and list(res["f2v"]["matching"]) == ["2"] and res["f2v"]["matching"]["2"]["n"] >= 6


def test_a_missing_checkpoint_fails_before_anything_is_written(setup, tmp_path):
    root, ckpts = setup
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"checkpoint not found: .*nope \(nothing written\)"):
        evaluate.main(
            [
                "--checkpoint",
                str(ckpts[0]),
                str(tmp_path / "nope"),
                "--data",
                str(root / "data"),
                "--out",
                str(out),
                "--max-k",
                "2",
                *FAST,
            ]
        )
    assert not out.exists()


def test_a_broken_checkpoint_is_skipped_and_reported_without_losing_the_others(setup, tmp_path, capsys):
    root, ckpts = setup
    broken = tmp_path / "broken"
    broken.mkdir()
    torch.save({"format": "something-else"}, broken / "model.pt")
    out = tmp_path / "out"
    code = evaluate.main(
        [
            "--checkpoint",
            str(broken),
            str(ckpts[0]),
            "--data",
            str(root / "data"),
            "--out",
            str(out),
            "--max-k",
            "2",
            *FAST,
        ]
    )
    assert code == 1
    assert "error: broken:" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["results"]) == {"base"} and "broken" in doc["meta"]["failed_checkpoints"]
    assert (out / "checkpoints/base.json").exists()


def test_small_splits_cap_k_and_impossible_rules_fail_clearly(setup, tmp_path, capsys):
    root, _ = setup
    out = tmp_path / "g"
    evaluate.main(["--trials-only", "--data", str(root / "data"), "--gender-matched", "--out", str(out), *FAST])
    assert "1:K trials go up to K=6 instead of 10" in capsys.readouterr().out  # 6 of 11 share a gender
    trials = json.loads((out / "trials/test.json").read_text())
    assert trials["header"]["max_k"] == 6 and trials["header"]["options"]["gender_matched"] is True
    one_video = tmp_path / "data"
    build_store(one_video / "voxceleb1/test/eval.zarr", n_ids=10, videos=1, clips=3, seconds=0.2)
    with pytest.raises(SystemExit, match="no test trial could be generated.*different-video positive"):
        evaluate.main(["--trials-only", "--data", str(one_video), "--out", str(tmp_path / "o"), *FAST])


def test_exported_embeddings_record_pair_dependence_and_audio_files_are_decoded(tmp_path):
    import av
    import numpy as np

    from launch.checkpoint import load_model
    from launch.eval.embeddings import EmbeddingStore, export_embeddings
    from launch.eval.inputs import EvalInputs, ItemLoader
    from shards.evalstore import EvalStore

    store = EvalStore(build_store(tmp_path / "eval.zarr", n_ids=3, videos=1, clips=2, seconds=0.3))
    loader = ItemLoader(store, EvalInputs(audio_seconds=0.5, face_size=32))
    for name, expected in (("aicanet", True), ("bianet", False)):
        model = load_model(tiny_checkpoint(tmp_path / name, name))
        path = export_embeddings(model, loader, store, tmp_path / f"{name}.zarr", {"model": name}, progress=False)
        emb = EmbeddingStore(path)
        assert emb.attrs["pair_dependent"] is expected
        # BIANet with NIA: [h^, h~] so that retrieval keeps its counterfactual (embeddings.py)
        assert emb.voice.shape == emb.face.shape == (6, 128 if name == "aicanet" else 256)
        assert (emb.attrs["counterfactual_weight"] is None) == (name == "aicanet")
        np.testing.assert_allclose(np.linalg.norm(emb.face, axis=1), 1.0, atol=1e-5)
    # an AAC .m4a at 22.05 kHz stereo decodes to 16 kHz mono int16 of the same duration
    m4a = tmp_path / "q.m4a"
    with av.open(str(m4a), "w") as out:
        stream = out.add_stream("aac", rate=22050, layout="stereo")
        t = np.arange(22050) / 22050
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = 22050
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    wave = retrieve.decode_audio(str(m4a))
    assert wave.dtype == np.int16 and abs(len(wave) - 16000) < 1600
    with pytest.raises(SystemExit, match="cannot read audio"):
        retrieve.decode_audio(str(tmp_path / "missing.wav"))


def test_one_row_from_the_k2_multiway_and_verification_checkpoints_of_a_model(setup, tmp_path):
    """The papers' scorer: each column comes from the head trained for it, and the table says which."""
    root, _ = setup
    k2 = tiny_checkpoint(tmp_path / "k2", "bianet", num_candidates=2)
    k3 = tiny_checkpoint(tmp_path / "k3", "bianet", num_candidates=3, seed=2)
    k1 = tiny_checkpoint(tmp_path / "k1", "bianet", num_candidates=1, seed=3)
    out = tmp_path / "out"
    assert (
        evaluate.main(
            [
                "--checkpoint",
                str(k2),
                str(k3),
                str(k1),
                "--names",
                "BIANet",
                "BIANet",
                "BIANet",
                "--data",
                str(root / "data"),
                "--out",
                str(out),
                "--max-k",
                "3",
                *FAST,
            ]
        )
        == 0
    )
    doc = json.loads((out / "results.json").read_text())
    row = doc["results"]["BIANet"]["directions"]["f2v"]
    assert {k: (m["method"], m["trained_k"]) for k, m in row["matching"].items()} == {
        "2": ("head", 2),
        "3": ("head", 3),
    }
    assert (row["verification"]["method"], row["verification"]["trained_k"]) == ("head", 1)
    assert row["verification"]["checkpoint"] == str(k1)
    md = (out / "results.md").read_text()
    assert (
        "| BIANet | head (K=2 model) | head (K=2 model) | head (K=3 model) | head (K=3 model) | "
        "head (K=1 model) | head (K=1 model) |" in md
    )
    # two checkpoints that would produce the same column in the same way: refused, both named
    with pytest.raises(SystemExit, match="scored by two checkpoints"):
        evaluate.main(
            [
                "--checkpoint",
                str(k2),
                str(k2),
                "--names",
                "X",
                "X",
                "--data",
                str(root / "data"),
                "--out",
                str(tmp_path / "o2"),
                "--max-k",
                "3",
                *FAST,
            ]
        )


def test_a_k2_model_alone_leaves_the_other_columns_empty_with_the_head_scorer(setup, tmp_path):
    root, ckpts = setup
    out = tmp_path / "o"
    assert evaluate.main(["--checkpoint", str(ckpts[0]), "--data", str(root / "data"), "--out", str(out), *FAST]) == 0
    md = (out / "results.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| base |"))
    assert row.count(" - |") == 4  # multi-way and verification: no head for them
