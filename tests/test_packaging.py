"""A wheel built from the repository is a working install: code, presets, bundled metadata and the
console scripts, usable from any directory with no clone around (slow: builds the wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "voxface-synth",
    "voxface-ingest",
    "voxface-doctor",
    "voxface-train",
    "voxface-eval",
    "voxface-retrieve",
    "voxface-match",
    "voxface-export",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("voxface-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_carries_presets_metadata_and_console_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert (
        "voxface/__init__.py" in names
        and "launch/configs/demo.yaml" in names
        and "launch/configs/_paper_vox1.yaml" in names
    )
    assert {
        "pipeline/voxceleb_meta/vox1_meta.csv",
        "pipeline/voxceleb_meta/README.md",
        "pipeline/voxceleb_meta/cmpc_lists/matching_v2f_U.csv.gz",
    } <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "data/", "docs/")) for n in names)
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for script in SCRIPTS:
        assert f"{script} = " in entry_points


@pytest.mark.slow
def test_an_installed_copy_works_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        f"import voxface, launch, pipeline.bundled as b, launch.config as c, launch.evaluate as e;"
        f"assert launch.__file__.startswith({str(target)!r}), launch.__file__;"
        f"assert callable(voxface.load_matcher);"
        f"assert c.load_config('demo')['model']['name'];"
        f"assert b.meta_file('voxceleb2').is_file() and e.DEFAULT_META.startswith({str(target)!r});"
        f"print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
