"""One results row from several checkpoints of one model: each column from the head trained for it.

The papers train one classifier per task (AICANet §IV-B, BIANet §5.1): K = 2 for binary
matching, K = 10 for multi-way matching, K = 1 for verification. A row of their tables therefore
comes from up to three trainings of the same model. `launch.evaluate` scores each checkpoint with
what its head can score (`launch.eval.scoring`) and `merge_rows` joins the checkpoints given the
same `--names` into one row:

* every metric entry records the checkpoint that produced it (`checkpoint`) and its scorer
  (`method`), so each column of the table names its source;
* a column scored by one checkpoint's head and another's embeddings takes the head's score;
* a column scored by two checkpoints in the same way is ambiguous and an error naming both.
"""

from __future__ import annotations

import copy


class RowMergeError(ValueError):
    """Two checkpoints of one row produce the same column in the same way."""


def _tag(entry: dict, source: str, result: dict) -> dict:
    """The entry with the checkpoint that produced it and the K its head was trained for."""
    entry = dict(entry)
    entry.setdefault("checkpoint", source)
    entry.setdefault("trained_k", (result.get("checkpoint") or {}).get("num_candidates"))
    return entry


def _pick(current: dict | None, new: dict, column: str, name: str) -> dict:
    if current is None:
        return new
    if current["method"] == new["method"]:
        raise RowMergeError(
            f"{name}: {column} is scored by two checkpoints ({current['checkpoint']} and "
            f"{new['checkpoint']}, both {new['method']}); give each row one checkpoint per task "
            f"(K = 2, K = 10, K = 1) or use different --names"
        )
    return current if current["method"] == "head" else new


def merge_rows(name: str, parts: list[tuple[str, dict]]) -> dict:
    """Merge `parts` = [(checkpoint path, evaluate() result)] of one row (module docstring)."""
    if len(parts) == 1:
        source, result = parts[0]
        merged = copy.deepcopy(result)
        for res in merged["directions"].values():
            for k, m in res.get("matching", {}).items():
                res["matching"][k] = _tag(m, source, result)
            if "verification" in res:
                res["verification"] = _tag(res["verification"], source, result)
        merged["checkpoints"] = [result.get("checkpoint", {"path": source})]
        return merged
    merged = {"directions": {}, "checkpoints": []}
    for source, result in parts:
        merged["checkpoints"].append(result.get("checkpoint", {"path": source}))
        for key in ("bootstrap", "inputs"):
            merged.setdefault(key, result.get(key))
        merged["seconds"] = round(merged.get("seconds", 0.0) + float(result.get("seconds", 0.0)), 2)
        for direction, res in result["directions"].items():
            out = merged["directions"].setdefault(direction, {})
            for k, m in res.get("matching", {}).items():
                matching = out.setdefault("matching", {})
                matching[k] = _pick(matching.get(k), _tag(m, source, result), f"{direction} 1:{k}", name)
            if "verification" in res:
                out["verification"] = _pick(
                    out.get("verification"),
                    _tag(res["verification"], source, result),
                    f"{direction} verification",
                    name,
                )
    merged["checkpoint"] = merged["checkpoints"][0]
    for res in merged["directions"].values():  # keep K in ascending order for tables and plots
        if "matching" in res:
            res["matching"] = dict(sorted(res["matching"].items(), key=lambda kv: int(kv[0])))
    return merged
