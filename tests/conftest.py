"""Suite-wide rules: a test marked `gpu` runs only where CUDA is present (never needed by CI)."""

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
