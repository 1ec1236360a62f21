"""Experiment configuration: YAML presets + ``section.key=value`` overrides + validation.

One YAML per experiment (``launch/configs/``) with the sections ``data``, ``model``, ``optim`` and
``train`` (ARCHITECTURE.md §6; evaluation is configured on the ``launch.evaluate`` command line).
A preset may start from another one with ``base: other.yaml`` (path relative to the preset) so
the paper presets only spell out what differs. Every field can be overridden on the command line, at any depth
(``optim.lr.generator=1e-3``); values are parsed as YAML so ``null``, ``[25, 40]`` and ``true``
work as expected.

Why the validation is split: ``optim`` and ``train`` belong to the trainer, so this module knows
every key and rejects unknown keys and bad values with a message that names the key and the
allowed values. ``data`` is owned by the loader and ``model`` by ``models.build_model``; both
validate their own keys (they know their defaults), and ``train.py`` builds them before any
expensive work so a typo still fails in the first seconds. This module only checks the
cross-section invariants that no single owner can see (K agrees between loader and model, the
annealing horizon matches the number of epochs).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("data", "model", "optim", "train")
MODULE_GROUPS = ("face_encoder", "voice_encoder", "generator", "discriminator", "classifier", "attention")


class ConfigError(ValueError):
    """A config problem the user can fix; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Field:
    """One trainer-owned setting: its default, accepted types and an optional value check."""

    default: Any
    types: tuple
    doc: str
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text or None
    nullable: bool = False
    children: dict[str, Field] | None = field(default=None)


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _betas(v):
    if len(v) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v):
        return "must be two numbers in [0, 1), e.g. [0.9, 0.999]"
    return None


def _milestones(v):
    if not all(isinstance(m, (int, float)) and m > 0 for m in v) or list(v) != sorted(v):
        return "must be an increasing list of positive epoch numbers, e.g. [25, 40]"
    return None


def _trackers(v):
    from launch.logging_utils import KNOWN_TRACKERS

    unknown = [t for t in v if t not in KNOWN_TRACKERS]
    if unknown:
        return f"names unknown tracker {unknown[0]!r}; allowed: {', '.join(KNOWN_TRACKERS)}"
    return None


def _no_unused_search(v):
    if not v:
        return None
    return (
        "is not supported: the discriminator's loss is computed in model.loss(), outside the DDP "
        "forward, so DDP would mark the discriminator's parameters unused and then fail when their "
        "gradients arrive ('mark a variable ready only once'). It is not needed either: every model "
        "config gives every trainable parameter a gradient each step (frozen modules are left out of "
        "DDP); set train.find_unused_parameters=false"
    )


NUM = (int, float)

# AICANet Table I (initial learning rates per module); BIANet §4 uses the same values.
PAPER_LR = {
    "face_encoder": 5e-2,
    "voice_encoder": 5e-2,
    "generator": 5e-3,
    "discriminator": 5e-3,
    "classifier": 5e-2,
    "attention": 5e-3,
}

OPTIM_SCHEMA: dict[str, Field] = {
    "lr": Field(
        None,
        (dict,),
        "initial learning rate per module group (AICANet Table I)",
        children={
            g: Field(PAPER_LR[g], NUM, f"initial lr of the {g} group", check=_non_negative) for g in MODULE_GROUPS
        },
    ),
    "lr_scale": Field(
        1.0,
        NUM,
        "multiplies every lr; the paper presets keep Table I in lr and set 0.1, the "
        "rates the authors' code trained at (docs/TRAINING.md)",
        check=_positive,
    ),
    "betas": Field([0.9, 0.999], (list,), "Adam betas of the main optimiser (paper: momentum 0.9)", check=_betas),
    "disc_betas": Field(
        [0.9, 0.999], (list,), "Adam betas of the discriminator optimiser (paper 0.9; authors' code 0.5)", check=_betas
    ),
    "weight_decay": Field(5e-4, NUM, "L2 weight decay inside Adam (paper: 0.0005)", check=_non_negative),
    "eps": Field(1e-8, NUM, "Adam epsilon", check=_positive),
    "milestones": Field([25, 40], (list,), "epochs at which every lr is multiplied by gamma", check=_milestones),
    "gamma": Field(0.1, NUM, "lr decay factor at each milestone (paper: 0.1)", check=_positive),
    "grad_clip": Field(
        None,
        NUM,
        "max global grad norm per optimiser step; null = off (the authors' clipping is a no-op)",
        nullable=True,
        check=_positive,
    ),
}

TRAIN_SCHEMA: dict[str, Field] = {
    "epochs": Field(50, NUM, "training length in epochs (fractional allowed)", check=_positive),
    "seed": Field(25, (int,), "seed for model init, dropout and the loader's tuple stream"),
    "output_dir": Field("runs/default", (str,), "run folder: checkpoints/, logs, resolved config"),
    # "auto" or a path; existence is checked when the run starts (launch.checkpoint.resolve_resume)
    "resume": Field(None, (str,), "auto (latest checkpoint in output_dir) or a checkpoint path", nullable=True),
    "mixed_precision": Field(
        "auto", (str,), "auto = bf16 on a CUDA device that supports it, else no", choices=("auto", "no", "bf16")
    ),
    "grad_accum_steps": Field(1, (int,), "micro-batches per optimiser step", check=_positive),
    "max_steps": Field(
        None, (int,), "stop after this many optimiser steps (quick checks)", nullable=True, check=_positive
    ),
    "log_every": Field(10, (int,), "optimiser steps between log rows", check=_positive),
    "checkpoint_every": Field(
        0,
        (int,),
        "optimiser steps between periodic checkpoints; 0 = only at the end of each epoch",
        check=_non_negative,
    ),
    "keep_last": Field(2, (int,), "periodic/epoch checkpoints kept (best is kept separately)", check=_positive),
    "val_data": Field(
        None,
        (str, list),
        "validation split folder <out>/<dataset>/val (its eval.zarr "
        "is scored); null = no validation and no best checkpoint",
        nullable=True,
    ),
    "val_every": Field(1, (int,), "epochs between validations (also at the end of training)", check=_positive),
    "val_min_trials": Field(
        1000,
        (int,),
        "validation trials per direction; a small val split adds seeded trial sets until reached",
        check=_positive,
    ),
    "val_batch_size": Field(
        64, (int,), "tuples per validation scoring batch (does not change results)", check=_positive
    ),
    "val_k": Field(
        None, (int,), "candidates per validation tuple; null = the model's K", nullable=True, check=_positive
    ),
    "val_seed": Field(1234, (int,), "seed of the fixed validation trials"),
    "device": Field(
        "auto",
        (str,),
        "auto = CUDA when torch sees a GPU, else CPU (a multi-process CPU "
        "fallback warns); cuda = a GPU or a clear error; cpu = CPU on purpose",
        choices=("auto", "cpu", "cuda"),
    ),
    "cpu": Field(False, (bool,), "old spelling of train.device=cpu (kept for existing presets)"),
    "cudnn_benchmark": Field(
        True, (bool,), "cuDNN autotuner on CUDA (fixed crop shapes; each unique-item count is tuned once)"
    ),
    "log_with": Field(
        ["tensorboard"],
        (list,),
        "Accelerate experiment trackers beside the JSONL log (tensorboard, wandb, mlflow, ...); [] = JSONL only",
        check=_trackers,
    ),
    "find_unused_parameters": Field(
        False,
        (bool,),
        "must stay false: DDP cannot find unused parameters here (see the error for why)",
        check=_no_unused_search,
    ),
    "progress": Field(True, (bool,), "tqdm progress bar on the main process"),
}

SCHEMAS = {"optim": OPTIM_SCHEMA, "train": TRAIN_SCHEMA}


# ----------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """PyYAML implements YAML 1.1, where ``1e-3`` (no dot) is a *string*; every learning rate
    written that way would then fail validation. Also resolve such literals as floats.

    YAML 1.1 also reads ``no``/``yes``/``on``/``off`` as booleans, so ``train.mixed_precision=no``
    would arrive as ``False``; like YAML 1.2, only ``true``/``false`` are booleans here."""


# Copy the resolver table before editing it, so the change stays local to this loader.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_value(text: str) -> Any:
    """Parse an override value as YAML (``null``, ``[25, 40]``, ``{a: 1e-3}``, ``5e-4``)."""
    try:
        return _yaml_load(text) if text != "" else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse override value {text!r}: {problem}") from None


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: The presets shipped with the package (also found by bare name: ``--config aicanet_v2f``).
PRESET_DIR = Path(__file__).with_name("configs")


def resolve_preset(path: str | Path) -> Path:
    """A config file: the path as given, else a shipped preset of that name (``demo``, ``demo.yaml`` or
    ``launch/configs/demo.yaml`` when run outside a clone, e.g. after ``pip install voxface``)."""
    given = Path(path)
    if given.is_file():
        return given.resolve()
    name = given.name if given.suffix in (".yaml", ".yml") else given.name + ".yaml"
    if given.parent in (Path("."), Path("launch/configs")) and (PRESET_DIR / name).is_file():
        return (PRESET_DIR / name).resolve()
    known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("[!_]*.yaml")))
    raise ConfigError(f"config file not found: {given.resolve()} (shipped presets: {known})")


def read_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read one preset, following ``base:`` chains (cycles are an error)."""
    path = resolve_preset(path) if not _seen else Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (named by 'base' in {_seen[-1]})")
    if path in _seen:
        raise ConfigError(f"'base' cycle: {' -> '.join(map(str, _seen + (path,)))}")
    try:
        raw = _yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections {SECTIONS}")
    base = raw.pop("base", None)
    if base is not None:
        raw = _deep_merge(read_yaml(path.parent / base, _seen + (path,)), raw)
    return raw


def apply_override(cfg: dict, assignment: str) -> None:
    """Apply one ``section.key[.subkey]=value`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like section.key=value, e.g. train.epochs=5")
    dotted, text = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS or not all(parts):
        raise ConfigError(f"override {assignment!r}: key must be section.key with section one of {', '.join(SECTIONS)}")
    node = cfg.setdefault(parts[0], {})
    for i, part in enumerate(parts[1:-1], start=1):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {assignment!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = parse_value(text)


# ----------------------------------------------------------------------------- validation


def _type_name(types: tuple) -> str:
    return " or ".join(sorted({"number" if t in NUM else t.__name__ for t in types}))


def _validate_fields(values: dict, schema: dict[str, Field], where: str) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; allowed keys: {', '.join(schema)}")
    out = {}
    for name, spec in schema.items():
        key = f"{where}.{name}"
        if spec.children is not None:
            out[name] = _validate_fields(values.get(name) or {}, spec.children, key)
            continue
        value = values.get(name, copy.deepcopy(spec.default))
        if value is None:
            if not spec.nullable and spec.default is not None:
                raise ConfigError(f"{key} may not be null ({spec.doc})")
            out[name] = None
            continue
        ok_type = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
        if not ok_type:
            raise ConfigError(
                f"{key}={value!r} has type {type(value).__name__}; expected {_type_name(spec.types)} ({spec.doc})"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} must be finite")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(f"{key}={value!r} is not allowed; allowed values: {', '.join(map(str, spec.choices))}")
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise ConfigError(f"{key}={value!r} {problem}")
        out[name] = value
    return out


def validate(cfg: dict) -> dict:
    """Return a complete, checked copy of ``cfg`` (trainer sections filled with defaults)."""
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}; allowed sections: {', '.join(SECTIONS)}")
    out = {s: copy.deepcopy(cfg.get(s) or {}) for s in SECTIONS}
    for section in ("data", "model"):
        if not isinstance(out[section], dict):
            raise ConfigError(f"section {section} must be a mapping")
    for section, schema in SCHEMAS.items():
        out[section] = _validate_fields(out[section], schema, section)

    model, data, train = out["model"], out["data"], out["train"]
    if train["cpu"]:
        if train["device"] == "cuda":
            raise ConfigError("train.cpu=true contradicts train.device=cuda; use train.device alone")
        train["device"] = "cpu"
    if "name" not in model:
        raise ConfigError("model.name is required; allowed values: baseline, aicanet, bianet")
    k_model, k_data = model.get("num_candidates"), data.get("k")
    if k_model is not None and k_data is not None and k_model != k_data:
        raise ConfigError(
            f"model.num_candidates={k_model} but data.k={k_data}: the classifier is "
            f"built for the K the loader produces; set both to the same value"
        )
    if k_model is None and k_data is not None:
        model["num_candidates"] = k_data
    if k_data is None and k_model is not None:
        data["k"] = k_model
    # Eq. 2 annealing and Eq. 22 curriculum run over the whole training horizon by default.
    model.setdefault("total_epochs", train["epochs"])
    # One seed drives the run unless the tuple stream is seeded on purpose.
    data.setdefault("seed", train["seed"])
    return out


def load_config(path: str | Path, overrides: list[str] | tuple = ()) -> dict:
    """Read a preset, apply overrides in order, validate. The one entry point for CLIs."""
    cfg = read_yaml(path)
    for assignment in overrides:
        apply_override(cfg, assignment)
    return validate(cfg)


def dump_config(cfg: dict) -> str:
    """YAML text of a resolved config (saved next to every run so it can be reproduced)."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def describe_trainer_keys() -> str:
    """Human-readable list of every trainer-owned key with default and meaning (for --help)."""
    lines = []
    for section, schema in SCHEMAS.items():
        for name, spec in schema.items():
            if spec.children:
                for child, cspec in spec.children.items():
                    lines.append(f"  {section}.{name}.{child} = {cspec.default!r}  # {cspec.doc}")
            else:
                extra = f" [{'|'.join(spec.choices)}]" if spec.choices else ""
                lines.append(f"  {section}.{name} = {spec.default!r}{extra}  # {spec.doc}")
    return "\n".join(lines)


def check_owned_sections(cfg: dict) -> dict:
    """Run the loader's and the models' own validators on ``data`` and ``model`` now, so a typo in
    a preset or an override fails before any data is opened (their errors name the key and the
    allowed values). Returns the complete model config (every default filled in)."""
    from models import resolve_config
    from shards.config import LoaderConfig

    try:
        LoaderConfig.from_dict(dict(cfg["data"]))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return resolve_config(dict(cfg["model"]))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
