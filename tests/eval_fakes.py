"""Evaluation test inputs; they live in `launch.eval.testing` (a benchmark uses them too)."""

from launch.eval.testing import build_store, tiny_checkpoint

__all__ = ["build_store", "tiny_checkpoint"]
