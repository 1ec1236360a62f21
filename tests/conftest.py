"""Suite-wide rules: a test marked `gpu` runs only where CUDA is present (never needed by CI);
fixtures more than one test file reads."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker `gpu`); none on this machine")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def audio_member_sets(tmp_path_factory) -> dict[str, str]:
    """The same small shard set (8 identities, 3-4 s clips, 3 shards) with each audio member the
    loader reads: PCM WAV, FLAC with a seek table, FLAC without one (older shards). Read-only:
    a test that damages a shard copies it first."""
    from shards.testing import SyntheticSpec, make_shard_set

    def spec(**kw) -> SyntheticSpec:
        return SyntheticSpec(
            num_identities=8, videos_per_identity=3, clips_per_video=2, seconds=(3.0, 4.0),
            shard_sizes=[16, 16, 16], **kw,
        )  # fmt: skip

    root = tmp_path_factory.mktemp("audio_members")
    return {
        "wav": str(make_shard_set(root / "wav", spec())),
        "flac": str(make_shard_set(root / "flac", spec(audio_format="flac"))),
        "flac_old": str(make_shard_set(root / "flac_old", spec(audio_format="flac", flac_seektable=False))),
    }
