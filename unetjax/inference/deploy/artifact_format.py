"""The on-disk form of a deployable artifact: one model file and its JSON sidecar.

`model.stablehlo` (the bytes of `jax.export.Exported.serialize()`) or `model.onnx`, and beside it
`model.stablehlo.json` / `model.onnx.json`: what the model expects and returns, so a deployer
needs no unetjax to feed it. The sidecar also holds the model file's size and SHA-256, which
turns a truncated or altered file into a clear error before any runtime parses it.

Sidecar fields (format_version 1):
  format            "stablehlo" or "onnx"
  file              {name, bytes, sha256} of the model file
  input             {name, layout ("NHWC" / "NDHWC"), dtype, channels, value_range, color_mode,
                     resize (the training's data.resize, applied by the caller before the
                     artifact, predictions resized back; null: none), spatial_dims,
                     batch ("any"), spatial_size: {"multiple_of": 2^D, or one per axis
                     with per-axis pooling} or {"fixed": [..]}}
  normalization     {kind, mean, std}: applied inside the artifact, before the network
  output            {names, activation ("sigmoid" / "softmax"), classes, layout, threshold,
                     labels: how the optional "labels" output is formed, or null}
  model             {architecture, depth (L), full_depth (D), strides (per-axis pooling, or
                     null: every axis by 2; absent in older sidecars), mode, parameters, step,
                     source}
  config_sha256     SHA-256 of the training config as canonical JSON (`config_sha256`)
  runtime           stablehlo: {platforms, jax}; onnx: {opset, jax2onnx, onnx}
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

FORMAT_VERSION = 1
SUFFIXES = {".stablehlo": "stablehlo", ".onnx": "onnx"}
FORMATS = tuple(SUFFIXES.values())
REQUIRED = ("format", "file", "input", "normalization", "output", "model", "config_sha256")


def artifact_format(path: str | os.PathLike) -> str | None:
    """'stablehlo' or 'onnx' from the file name's suffix; None for anything else (a run)."""
    return SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower())


def sidecar_path(path: str | os.PathLike) -> str:
    return os.fspath(path) + ".json"


def config_sha256(config: Any) -> str:
    """SHA-256 of a config (ConfigDict or dict) as canonical JSON: keys sorted, no whitespace,
    the export bookkeeping key left out, so a run and its Orbax export hash alike."""
    as_json = config.to_json_best_effort() if hasattr(config, "to_json_best_effort") else config
    fields = json.loads(as_json) if isinstance(as_json, str) else dict(as_json)
    fields.pop("export", None)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, "rb") as f:
        content = f.read()
    return {
        "name": os.path.basename(os.fspath(path)),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def write_sidecar(path: str | os.PathLike, fields: dict[str, Any]) -> str:
    """Writes `<path>.json` with `fields` plus the model file's digest; returns its path."""
    sidecar = {"format_version": FORMAT_VERSION, **fields, "file": file_digest(path)}
    target = sidecar_path(path)
    with open(target + ".tmp", "w") as f:
        json.dump(sidecar, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(target + ".tmp", target)
    return target


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of the model file at `path`, checked against the file.

    Raises a one-line ValueError when the file or its sidecar is missing, the sidecar is not
    ours, or the file's size or SHA-256 differs from the sidecar's (truncated or changed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    target = sidecar_path(path)
    if not os.path.isfile(target):
        raise ValueError(
            f"{path}: its sidecar {target} is missing; export writes both (copy them together)"
        )
    try:
        with open(target) as f:
            sidecar = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{target}: not a readable JSON sidecar ({error})") from None
    missing = [key for key in REQUIRED if key not in sidecar]
    if missing or sidecar.get("format") not in FORMATS:
        raise ValueError(f"{target}: not an artifact sidecar (missing {missing or ['format']})")
    if sidecar.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{target}: format_version {sidecar['format_version']} is newer than this unetjax "
            f"reads ({FORMAT_VERSION}); upgrade unetjax"
        )
    expected = artifact_format(path)
    if expected != sidecar["format"]:
        raise ValueError(
            f"{path}: the sidecar says format {sidecar['format']!r} but the file name says "
            f"{expected!r}"
        )
    actual = file_digest(path)
    recorded = sidecar["file"]
    if actual["bytes"] != recorded.get("bytes") or actual["sha256"] != recorded.get("sha256"):
        raise ValueError(
            f"{path}: {actual['bytes']} bytes with SHA-256 {actual['sha256'][:12]}..., but its "
            f"sidecar records {recorded.get('bytes')} bytes, {str(recorded.get('sha256'))[:12]}"
            "...: the file is truncated or corrupt; export it again"
        )
    return sidecar
