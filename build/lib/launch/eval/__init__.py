"""Evaluation harness: trial lists, published-list importers, scoring, metrics, tables, plots.

Each module has one job; `launch/evaluate.py` and `launch/retrieve.py` wire them together.
See `docs/EVALUATION.md` for the protocols and every convention (crops, ties, CIs).
"""
