"""Shareable models: safetensors weights beside a JSON config that describes model and inputs.

Why a second format next to ``model.pt``: a ``.pt`` file is a torch pickle (``weights_only=True``
makes reading it safe, but only torch reads it), its data config named machine-specific shard
folders, and nothing in it said how a voice or a face must be prepared apart from loader keys
whose defaults live in code. A Hub-style folder is read without pickle by any safetensors
reader, offline, and its ``config.json`` alone says how to rebuild the model and how to turn a
user's files into the model's inputs exactly as ingest + evaluation do::

    <folder>/
        config.json        {"format": "voxface-hub/1", "model_config" (every key filled),
                            "data_config" (every LoaderConfig key; shards as <dataset>/<split>),
                            "preprocessing" (sample rate, downmix, window, log-mel, face crop ...),
                            "training" (epoch, step, training data), "weights_sha256"}
        model.safetensors  the state dict, tensor for tensor
        README.md          the model card (voxface.export)

One reader for both formats (:func:`read_payload`) gives the ``model.pt`` payload shape, so
evaluation, retrieval and ``voxface.load_matcher`` accept either. :func:`weights_fingerprint` is
the identity of a set of weights (the same for a checkpoint and its export); embeddings record it
so ``launch.retrieve`` can refuse a checkpoint that did not make them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import torch

from launch.checkpoint import MODEL_FORMAT, CheckpointError, complete_data_config, read_model_file

HUB_FORMAT = "voxface-hub/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def weights_fingerprint(state_dict: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order.

    Independent of the file format and of tensor strides, so a checkpoint and its Hub export have
    the same fingerprint, and any changed weight changes it."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{str(t.dtype)}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def is_hub_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


# ----------------------------------------------------------------------------- preprocessing


def ingest_settings(shards) -> tuple[dict, str]:
    """(face crop settings of ingest, where they came from) for the shard folders a model trained on.

    The face a model sees went through ingest (centred square crop, resize to the ingest face
    size, JPEG) and then the loader; the ingest half is recorded in each shard set's
    ``index.json``. Without a readable one the ingest defaults are used and the source says so.
    """
    from pipeline.extract import ExtractSettings

    for folder in shards or []:
        index = Path(folder) / "index.json"
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError):
            continue
        ingest = dict(data.get("ingest") or {})
        return (
            {
                "face_size": int(data.get("face_size") or ingest.get("face_size") or ExtractSettings.face_size),
                "jpeg_quality": int(ingest.get("jpeg_quality", ExtractSettings.jpeg_quality)),
                "crop_boxes": bool(ingest.get("crop_boxes", False)),
            },
            str(index),
        )
    return (
        {"face_size": ExtractSettings.face_size, "jpeg_quality": ExtractSettings.jpeg_quality, "crop_boxes": False},
        "ingest defaults (no index.json of the training shards was readable)",
    )


def log_mel_settings(overrides: dict | None) -> dict:
    """Every ``shards.features.LogMel`` argument: its defaults with the config's overrides."""
    from shards.features import LogMel

    params = inspect.signature(LogMel.__init__).parameters
    full = {k: p.default for k, p in params.items() if k not in ("self", "sample_rate")}
    full.update(dict(overrides or {}))
    return full


def describe_preprocessing(data_config: dict) -> dict:
    """Everything that turns a user's audio file and face image into the model's inputs.

    Written into ``config.json`` at export; computed from the checkpoint otherwise. The same
    steps as ingest (``pipeline.extract``) then evaluation (``launch.eval.inputs``)."""
    from launch.eval.inputs import EvalInputs

    dc = complete_data_config(data_config)
    inputs = EvalInputs.from_data_config(dc)
    ingest, source = ingest_settings(dc["shards"])
    return {
        "sample_rate": inputs.sample_rate,
        "downmix": "mean of the channels (pipeline.extract.downmix)",
        "resample": "soundfile + scipy polyphase for wav/flac, FFmpeg (PyAV) for other containers",
        "audio_seconds": inputs.audio_seconds,
        "audio_window": "centred; a shorter clip is loop-padded from its start",
        "log_mel": log_mel_settings(dc.get("log_mel")),
        "face_crop": "centred square of the image (the image is expected to be a face crop)",
        "ingest_face_size": ingest["face_size"],
        "jpeg_quality": ingest["jpeg_quality"],
        "face_size": int(inputs.face_size or ingest["face_size"]),
        "face_resize": "PIL bilinear to ingest_face_size, JPEG, then antialiased bilinear to face_size",
        "pixel_range": [-1.0, 1.0],
        "ingest_settings_from": source,
    }


def portable_shards(shards) -> list[str]:
    """Shard folders as ``<dataset>/<split>`` (what they are, not where they were)."""
    return [f"{Path(s).parent.name}/{Path(s).name}" for s in shards or []]


def training_data(shards) -> list[dict]:
    """What each training shard set held (from its index.json when it is readable here)."""
    rows = []
    for folder in shards or []:
        row = {"shards": portable_shards([folder])[0]}
        try:
            index = json.loads((Path(folder) / "index.json").read_text())
            row.update(
                {
                    "identities": index.get("num_identities"),
                    "samples": index.get("num_samples"),
                    "fingerprint": index.get("fingerprint"),
                    "split_preset": index.get("preset"),
                }
            )
        except (OSError, ValueError):
            row["note"] = "index.json not readable when exported"
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- reading


def read_payload(path: str | os.PathLike) -> dict:
    """The ``model.pt``-shaped payload of a checkpoint (folder, run folder, file) or a Hub folder.

    Adds ``preprocessing`` (from config.json, or described from the data config) and ``source``
    (``checkpoint`` | ``hub``). Problems raise :class:`CheckpointError` with one line."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return read_hub_folder(path)
    try:
        payload = read_model_file(path)
    except CheckpointError as exc:
        raise CheckpointError(_one_line(str(exc))) from None
    payload["preprocessing"] = describe_preprocessing(payload.get("data_config") or {})
    payload["source"] = "checkpoint"
    return payload


def _one_line(message: str) -> str:
    """torch's refusal of a non-checkpoint file spans paragraphs and suggests weights_only=False;
    keep the first line, with the unpickler's one-line reason instead of the advice."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return message
    first = lines[0]
    if "Weights only load failed" in first:
        detail = next((lines[i + 1] for i, line in enumerate(lines[:-1]) if "WeightsUnpickler error" in line), "")
        first = first.split("Weights only load failed")[0] + (
            "not a checkpoint torch loads with weights_only=True" + (f" ({detail})" if detail else "")
        )
    return first


def read_hub_folder(folder: str | os.PathLike) -> dict:
    """Payload of a Hub folder: config.json + model.safetensors, no pickle, no network."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: cannot read it ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != HUB_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{folder / CONFIG_FILE}: format {found!r}, expected {HUB_FORMAT!r}")
    for key in ("model_config", "data_config", "preprocessing"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{folder / CONFIG_FILE}: no {key!r} section")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_FILE} beside {CONFIG_FILE}")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: cannot read it ({str(exc).splitlines()[0]})") from None
    expected = config.get("weights_sha256")
    if expected and weights_fingerprint(state) != expected:
        raise CheckpointError(
            f"{weights}: weights do not match the sha256 in {CONFIG_FILE} (a changed or mixed-up file)"
        )
    training = config.get("training") or {}
    return {
        "format": MODEL_FORMAT,
        "model_config": config["model_config"],
        "data_config": config["data_config"],
        "state_dict": state,
        "epoch": training.get("epoch"),
        "step": training.get("step"),
        "preprocessing": config["preprocessing"],
        "source": "hub",
        "hub_config": config,
    }


# ----------------------------------------------------------------------------- writing


def hub_config(payload: dict) -> dict:
    """config.json for a checkpoint payload: complete, portable (no machine paths), fingerprinted."""
    import models

    data_config = complete_data_config(payload.get("data_config"))
    shards = data_config["shards"]
    preprocessing = payload.get("preprocessing") or describe_preprocessing(data_config)
    return {
        "format": HUB_FORMAT,
        "library": "voxface",
        # the weights are in the folder: an ImageNet file path of the training machine is not needed
        "model_config": {**models.resolve_config(dict(payload["model_config"])), "face_pretrained": None},
        "data_config": {**data_config, "shards": portable_shards(shards)},
        "preprocessing": {
            **preprocessing,
            "ingest_settings_from": _portable_source(str(preprocessing.get("ingest_settings_from", ""))),
        },
        "training": {
            "epoch": payload.get("epoch"),
            "step": payload.get("step"),
            "data": training_data(shards),
            "face_initialisation": "ImageNet" if payload["model_config"].get("face_pretrained") else "random",
        },
        "weights_sha256": weights_fingerprint(payload["state_dict"]),
    }


def _portable_source(source: str) -> str:
    """``/abs/.../voxceleb1/train/index.json`` -> ``voxceleb1/train/index.json``; other text as is."""
    p = Path(source)
    return "/".join(p.parts[-3:]) if p.name == "index.json" else source


def write_hub_folder(payload: dict, out: str | os.PathLike, card: str | None = None) -> Path:
    """Write config.json, model.safetensors (and README.md when ``card`` is given) into ``out``.

    Files are written under temporary names and renamed, so a kill never leaves a folder whose
    config names weights that are not there."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = hub_config(payload)
    state = {k: v.detach().to("cpu").contiguous() for k, v in payload["state_dict"].items()}
    tmp_weights = out / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    save_file(state, str(tmp_weights), metadata={"format": HUB_FORMAT, "weights_sha256": config["weights_sha256"]})
    os.replace(tmp_weights, out / WEIGHTS_FILE)
    files = {CONFIG_FILE: json.dumps(config, indent=2) + "\n"}
    if card is not None:
        files["README.md"] = card
    for name, text in files.items():
        tmp = out / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return out
