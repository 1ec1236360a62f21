"""The project stands alone: bundled data is complete and intact, and no tracked file names a path
outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipeline.bundled import META_DIR, BundledDataError, bundled_path, md5, meta_file
from pipeline.meta import read_meta

REPO = Path(__file__).resolve().parents[1]
_ROW = re.compile(r"^\| `([^`]+)` \| ([\d,]+) \| `([0-9a-f]{32})` \|$")


def _checksum_table() -> dict[str, tuple[int, str]]:
    text = (META_DIR / "README.md").read_text()
    section = text.split("## Checksums", 1)[1]
    return {m[1]: (int(m[2].replace(",", "")), m[3]) for m in map(_ROW.match, section.splitlines()) if m}


def test_every_bundled_file_matches_its_listed_size_and_md5():
    table = _checksum_table()
    on_disk = {str(p.relative_to(META_DIR)) for p in META_DIR.rglob("*") if p.is_file() and p.name != "README.md"}
    assert on_disk == set(table), "files and the README's checksum table differ"
    for rel, (size, digest) in table.items():
        path = bundled_path(rel)
        assert path.stat().st_size == size, rel
        assert md5(path) == digest, rel


def test_the_real_meta_tables_parse_with_their_published_counts():
    assert len(read_meta(meta_file("voxceleb1")).identities) == 1251
    assert len(read_meta(meta_file("voxceleb2")).identities) == 6114


def test_a_missing_bundled_file_is_a_clear_error():
    with pytest.raises(BundledDataError, match="install is incomplete"):
        bundled_path("no_such_list.txt")
    with pytest.raises(ValueError, match="unknown dataset"):
        meta_file("voxceleb3")


# A path outside the repository: the team workspace (any spelling), an absolute /work path, or a
# note that lives only there.
_OUTSIDE = re.compile(
    r"/work/|(?<![\w/.-])(?:\.\./)*shared/(?:data|research|papers|tools|DESIGN)"
    r"|evaluation_protocols|reference_code_study|streaming_pipeline_anchors|cpu_environment_probe"
    r"|DESIGN\.md"
)
_GENERATED_MD = {"results.md"}  # files the tools write (evaluation tables), not documents
_MD_NAME = re.compile(r"(?<![\w/.-])([A-Za-z_][\w-]*\.md)\b")


def test_no_tracked_file_names_a_path_outside_the_repository():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout (an installed copy has no tracked files to check)")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    names = {Path(rel).name for rel in files} | _GENERATED_MD
    offenders = []
    for rel in files:
        path = REPO / rel
        if rel.startswith("pipeline/voxceleb_meta/") or rel == "tests/test_bundled.py" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            missing_docs = [name for name in _MD_NAME.findall(line) if name not in names]
            if _OUTSIDE.search(line) or missing_docs:
                offenders.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_default_meta_is_the_copy_own_file_else_the_bundled_table(tmp_path):
    from pipeline.bundled import default_meta

    assert default_meta("voxceleb2", tmp_path) == meta_file("voxceleb2")
    (tmp_path / "vox2_meta.csv").write_text("VoxCeleb2 ID,VGGFace2 ID,Gender,Set\n")
    assert default_meta("voxceleb2", tmp_path) == tmp_path / "vox2_meta.csv"


def test_no_code_edits_sys_path():
    """The package is installed (make venv, pip install .); scripts and tests import it as users do."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = [
        rel
        for rel in files
        if rel != "tests/test_bundled.py"
        and (REPO / rel).is_file()
        and re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", (REPO / rel).read_text())
    ]
    assert not offenders
