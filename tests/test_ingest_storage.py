"""Storage faults in ingest: a full disk or a read-only output while writing a shard or a report
gives one line naming the path and the cause, a non-zero exit, and loses nothing (the same
command resumes to the same bytes once there is space); re-running a finished ingest on
read-only storage says there is nothing to do and exits 0.

Faults are injected by monkeypatching (root ignores permission bits, so chmod proves nothing)
and, where the machine allows mounting, on a real size-limited tmpfs remounted read-only."""

from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ingest_media import make_vox2_corpus

import pipeline.ingest as ingest_mod
from pipeline import shardtask
from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, main, run_ingest
from pipeline.shardtask import StorageError


def _cfg(corpus: Path, out: Path) -> IngestConfig:
    return IngestConfig(
        dataset="voxceleb2",
        root=corpus,
        meta=corpus / "vox2_meta.csv",
        out=out,
        workers=1,
        shard_samples=3,
        progress=False,
        extract=ExtractSettings(frames_per_clip=2, face_size=32),
    )


def _args(corpus: Path, out: Path) -> list[str]:
    return [
        "--dataset",
        "voxceleb2",
        "--root",
        str(corpus),
        "--out",
        str(out),
        "--workers",
        "1",
        "--shard-samples",
        "3",
        "--frames-per-clip",
        "2",
        "--face-size",
        "32",
        "--no-progress",
    ]


def _snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and ".ingest" not in p.relative_to(out).as_posix()
        and "eval.zarr" not in p.as_posix()
        and p.name != "report.json"
    }


def _ingest(corpus: Path, out: Path):
    with ThreadPoolExecutor(1) as pool:  # in-process, so monkeypatched faults reach the tasks
        return run_ingest(_cfg(corpus, out), log=lambda *_: None, executor=pool)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_vox2_corpus(tmp_path_factory.mktemp("storage") / "vox2", clips_per_video=2, videos=1, with_txt=False)


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    _ingest(corpus, out)
    return out


def _done_shards(out: Path) -> set[str]:
    return {f"{p.parent.parent.name}/{p.stem}" for p in out.rglob(".ingest/shard-*.json")}


def test_disk_full_while_writing_a_shard_is_one_line_and_resumes(corpus, clean, tmp_path, monkeypatch):
    class FullDisk(shardtask.ShardWriter):
        def add(self, key, members):
            if self.path.name == "shard-000001.tar":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().add(key, members)

    monkeypatch.setattr(shardtask, "ShardWriter", FullDisk)
    out = tmp_path / "out"
    with pytest.raises(StorageError) as err:
        _ingest(corpus, out)
    message = str(err.value)
    assert "\n" not in message
    assert "shard-000001.tar" in message and "disk full" in message
    assert _done_shards(out), "shards finished before the fault must be kept"
    for tar in out.rglob("*.tar"):  # every visible shard is whole and has its done-marker
        assert (tar.parent / ".ingest" / (tar.stem + ".json")).exists()
    assert not list(out.rglob("*.tar.partial"))
    monkeypatch.undo()
    _ingest(corpus, out)  # space freed: the same command finishes
    assert _snapshot(out) == _snapshot(clean)


def test_read_only_report_gives_one_line_and_a_nonzero_exit(corpus, clean, tmp_path, monkeypatch, capsys):
    real = ingest_mod.write_json_atomic

    def read_only_reports(path, obj, indent=1):
        if Path(path).name == "report.json":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, obj, indent)

    monkeypatch.setattr(ingest_mod, "write_json_atomic", read_only_reports)
    out = tmp_path / "out"
    assert main(_args(corpus, out)) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "report.json: read-only file system" in err and str(out) in err
    monkeypatch.undo()
    assert main(_args(corpus, out)) == 0
    assert _snapshot(out) == _snapshot(clean)


def _make_read_only(monkeypatch, root: Path) -> None:
    """Every write, create, rename or delete under `root` fails with EROFS, as on a read-only
    mount (reads work)."""
    root = str(root)

    def under(path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(root)
        except TypeError:
            return False

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    real_open, real_mkdir = builtins.open, os.mkdir

    def guarded_open(file, mode="r", *args, **kwargs):
        if under(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if under(path) and not os.path.exists(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    for name in ("replace", "rename", "unlink", "rmdir"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda p, *a, _real=real, **k: refuse(p) if under(p) else _real(p, *a, **k))


def test_finished_ingest_on_read_only_storage_has_nothing_to_do(corpus, clean, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _ingest(corpus, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    _make_read_only(monkeypatch, out)
    assert main(_args(corpus, out)) == 0
    assert "nothing to do" in capsys.readouterr().out
    # an unfinished one on read-only storage: one line naming the folder and the cause
    missing = tmp_path / "missing"
    missing.mkdir()
    _make_read_only(monkeypatch, missing)
    assert main(_args(corpus, missing)) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "read-only file system" in err and str(missing) in err
    monkeypatch.undo()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        return (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False
            ).returncode
            == 0
        )
    except OSError:
        return False


def test_real_full_then_read_only_tmpfs(corpus, clean, tmp_path, capsys):
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "size=160k"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        out = mnt / "out"
        with pytest.raises(StorageError, match="disk full") as err:
            _ingest(corpus, out)
        assert str(mnt) in str(err.value) and "\n" not in str(err.value)
        assert _done_shards(out)
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        _ingest(corpus, out)
        assert _snapshot(out) == _snapshot(clean)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        capsys.readouterr()
        assert main(_args(corpus, out)) == 0
        assert "nothing to do" in capsys.readouterr().out
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
