"""Print a model's complete config and its parameter count per group.

python -m models --name aicanet                  # paper defaults
python -m models --name bianet --set size=tiny num_candidates=10 epsilon=0.1
python -m models --rows                          # every table row of both papers -> its config
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .ablations import ABLATIONS, ablation_config, paper_rows_markdown
from .registry import DEFAULTS, build_model


def _parse_value(text: str) -> Any:
    """Values read exactly as training overrides read them (YAML: 2, 0.1, 1e-3, true, null, [1, 2])."""
    from launch.config import ConfigError, parse_value  # the one parser of command-line values

    try:
        return parse_value(text)
    except ConfigError as err:
        raise SystemExit(f"python -m models: {err}") from None


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(
        prog="python -m models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--rows", action="store_true", help="print every table row of both papers and the config that reproduces it"
    )
    source.add_argument("--name", choices=sorted(DEFAULTS), help="model to build with its paper defaults")
    source.add_argument("--ablation", choices=sorted(ABLATIONS), help="an ablation row of models/ablations.py")
    parser.add_argument("--tiny", action="store_true", help="the CPU-demo sizes: the same as --set size=tiny")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, values read as training overrides read them (YAML: 2, 0.1, true, null)",
    )
    args = parser.parse_args(argv)
    if args.rows:
        print(paper_rows_markdown(), end="")
        return {}
    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = _parse_value(value)
    if args.ablation:
        cfg = {**ablation_config(args.ablation, **({"size": "tiny"} if args.tiny else {})), **overrides}
    else:
        cfg = {"name": args.name, **({"size": "tiny"} if args.tiny else {}), **overrides}
    try:
        model = build_model(cfg)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    counts = model.param_counts()
    print(json.dumps({"config": model.cfg, "parameters": counts, "parameters_total": sum(counts.values())}, indent=2))
    return counts


if __name__ == "__main__":
    main()
