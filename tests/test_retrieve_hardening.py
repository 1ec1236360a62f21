"""`launch.retrieve`: one-line errors, any working directory, and only the checkpoint that made
the embeddings."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from eval_fakes import build_store, tiny_checkpoint

from launch import evaluate, retrieve


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Embeddings exported with *relative* --data/--out paths from inside the project folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("retr")
    project = root / "project"
    build_store(project / "data/voxceleb1/test/eval.zarr", n_ids=4, seconds=0.3)
    ckpt = tiny_checkpoint(project / "ck", "baseline")
    other = tiny_checkpoint(project / "ck_other", "baseline", seed=7)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        assert (
            evaluate.main(
                [
                    "--checkpoint",
                    "ck",
                    "--data",
                    "data",
                    "--out",
                    "out",
                    "--export-embeddings",
                    "--max-k",
                    "2",
                    "--probes-per-identity",
                    "1",
                    "--bootstrap",
                    "5",
                    "--no-progress",
                    "--allow-seen-identities",
                ]
            )
            == 0
        )
    wav = root / "q.wav"
    sf.write(wav, (3000 * np.sin(np.arange(8000) / 7)).astype(np.int16), 16000)
    return root, project, project / "out/embeddings/ck-test.zarr", ckpt, other, wav


def _one_line_error(capsys, argv, match):
    with pytest.raises(SystemExit) as err:
        retrieve.main(argv)
    msg = str(err.value.code)
    assert msg.startswith("error: ") and "\n" not in msg and match in msg, msg
    return msg


def test_bad_key_store_and_checkpoint_are_one_line_errors(exported, tmp_path, capsys):
    root, project, emb, ckpt, other, wav = exported
    _one_line_error(capsys, ["--embeddings", str(emb), "--key", "vox1_nobody"], "is not in")
    _one_line_error(capsys, ["--embeddings", str(tmp_path / "none.zarr"), "--map"], "no embeddings at")
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr/zarr.json").write_text("{broken")
    _one_line_error(capsys, ["--embeddings", str(tmp_path / "junk.zarr"), "--map"], "not an embeddings store")
    _one_line_error(
        capsys,
        ["--embeddings", str(emb), "--audio", str(wav), "--checkpoint", str(tmp_path / "nock")],
        "checkpoint not found",
    )
    _one_line_error(
        capsys,
        ["--embeddings", str(emb), "--audio", str(tmp_path / "gone.wav"), "--checkpoint", str(ckpt)],
        "cannot read audio",
    )
    (tmp_path / "empty.m4a").write_bytes(b"")
    _one_line_error(
        capsys,
        ["--embeddings", str(emb), "--audio", str(tmp_path / "empty.m4a"), "--checkpoint", str(ckpt)],
        "cannot read audio",
    )


def test_works_from_another_directory_and_after_moving_both_folders(exported, tmp_path, monkeypatch, capsys):
    root, project, emb, ckpt, other, wav = exported
    monkeypatch.chdir(tmp_path)  # not the directory the export ran in
    assert retrieve.main(["--embeddings", str(emb), "--audio", str(wav), "--checkpoint", str(ckpt), "--top", "3"]) == 0
    first = capsys.readouterr().out
    assert first.count("\n") >= 5
    moved = tmp_path / "elsewhere"
    shutil.copytree(project, moved)
    shutil.rmtree(project / "data")  # the original store is gone: only the copy remains
    try:
        assert (
            retrieve.main(
                [
                    "--embeddings",
                    str(moved / "out/embeddings/ck-test.zarr"),
                    "--audio",
                    str(wav),
                    "--checkpoint",
                    str(moved / "ck"),
                    "--top",
                    "3",
                ]
            )
            == 0
        )
        assert capsys.readouterr().out.split("\n")[2:] == first.split("\n")[2:]  # same ranking and scores
    finally:
        shutil.copytree(moved / "data", project / "data")


def test_refuses_a_checkpoint_that_did_not_make_the_embeddings(exported, tmp_path, capsys):
    import voxface

    root, project, emb, ckpt, other, wav = exported
    msg = _one_line_error(
        capsys,
        ["--embeddings", str(emb), "--audio", str(wav), "--checkpoint", str(other)],
        "did not make these embeddings",
    )
    assert str(ckpt.resolve()) in msg
    # the same weights exported to a Hub folder are the same model: accepted
    hub = voxface.export_hub(ckpt, tmp_path / "hub")
    assert retrieve.main(["--embeddings", str(emb), "--audio", str(wav), "--checkpoint", str(hub)]) == 0


def test_embeddings_without_a_fingerprint_warn_instead_of_passing_silently(exported, tmp_path, capsys):
    import zarr

    root, project, emb, ckpt, other, wav = exported
    old = tmp_path / "old.zarr"
    shutil.copytree(emb, old)
    group = zarr.open_group(str(old), mode="r+")
    attrs = dict(group.attrs)
    attrs.pop("checkpoint_fingerprint")
    group.attrs.clear()
    group.attrs.update(attrs)
    assert retrieve.main(["--embeddings", str(old), "--audio", str(wav), "--checkpoint", str(other)]) == 0
    err = capsys.readouterr().err
    assert "predates weight fingerprints" in err and len(err.strip().splitlines()) == 1
