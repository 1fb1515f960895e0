"""When a row fails: save its first failing batch (with a one-command replay), replay it, and name
the first layer whose output diverges."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import write_atomic
from poolkit.common.names import check_name
from poolkit.exporter.manifest import load_manifest
from poolkit.exporter.spec import parse_spec
from poolkit.runtimes.base import DEVICES, run_batch
from poolkit.runtimes.registry import has_layer_outputs, layer_outputs, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.comparator import DEFAULT_ATOL, DEFAULT_RTOL, Accumulator, Comparison, compare
from poolkit.verify.replay_file import read_replay
from poolkit.verify.report import VerifyOptions, VerifyRow


def first_diverging_layer(runtime: str, model: ModelArtifacts, x: np.ndarray, atol: float, rtol: float) -> str:
    """Compare layer by layer; name the first whose output differs (with its spec text)."""
    if not has_layer_outputs(runtime):
        return f"unknown ({runtime} cannot report layer outputs)"
    try:
        expected = layer_outputs("eager", model.eager_module(), x)
        actual = dict(layer_outputs(runtime, model.source(runtime), x))
    except Exception as exc:  # noqa: BLE001 - localisation is a bonus; say why it is missing
        return f"unknown (layer outputs unavailable: {one_line(exc)})"
    reference = model.reference
    layers = parse_spec(reference.spec).layers if reference and not reference.is_user_model else ()
    missing: list[str] = []
    for index, (name, outs) in enumerate(expected):
        if name not in actual:
            missing.append(f"{name} (layer {index + 1}" + (f": {layers[index]})" if index < len(layers) else ")"))
            continue  # folded away by the exporter, or dropped: nothing to compare here
        if len(actual[name]) != len(outs) or not all(
            compare(e, a, atol, rtol) for e, a in zip(outs, actual[name], strict=True)
        ):
            return f"{name} (layer {index + 1}" + (f": {layers[index]})" if index < len(layers) else ")")
    if missing:  # the output differs and no layer that has nodes does: the prime suspect has none
        return f"{missing[0]}: no node of the artifact computes it (dropped, or folded into another layer)"
    return "none: every layer matches on its own, the difference builds up across layers"


def save_failure(
    row: VerifyRow,
    model: ModelArtifacts,
    first: int,
    x: np.ndarray,
    expected: list[np.ndarray],
    actual: list[np.ndarray],
    options: VerifyOptions,
    input_set: str = "raw",
) -> tuple[str, str]:
    """Write the failing batch as .npz, with what is needed to replay it in one command."""
    # Built from checked names only: a name read from a manifest never steers a write out of --results.
    parts = [check_name(part, "name") for part in (row.model, row.format, row.runtime, row.device)]
    path = Path(options.results_dir) / "verify_failures" / f"{'.'.join(parts)}.npz"
    meta = {
        "models_dir": str(Path(model.models_dir).resolve()),  # the replay command works from any folder
        "model": row.model,
        "format": row.format,
        "runtime": row.runtime,
        "device": row.device,
        "first_image": first,
        "input_set": input_set,
        "atol": options.atol,
        "rtol": options.rtol,
    }
    arrays: dict[str, Any] = {"input": x, **{f"expected_{i}": e for i, e in enumerate(expected)}}
    arrays.update({f"actual_{i}": a for i, a in enumerate(actual)})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)

    write_atomic(path, write)
    command = f"poolkit verify --replay {shlex.quote(str(Path(path).resolve()))} --models {shlex.quote(str(meta['models_dir']))}"
    user = model.reference.import_path if model.reference else None
    if user and model.reference and model.reference.object_name:  # a model of your own runs only when named
        command += f" --model {shlex.quote(f'{user}:{model.reference.object_name}')}"
    return str(path), command


def replay_batch(
    path: Path,
    models_dir: Path,
    trust: list[str] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> tuple[dict[str, Any], list[Comparison]]:
    """Run a saved failing batch again through the same artifact and runtime; compare with the saved eager output.

    The `.npz` is data only (`replay_file.py`): it names an artifact of the manifest, never code to
    run, and never sets a tolerance (atol and rtol are the command line's). The artifact is opened
    from `models_dir` (the user's `--models`), the saved folder must be that one, and the artifact's
    hash is checked against its manifest as in any verify.
    """
    saved = read_replay(path)
    meta, x, expected = saved.meta, saved.input, saved.expected
    model_name, runtime, device, first = meta["model"], meta["runtime"], meta["device"], meta["first_image"]
    meta.update(atol=atol, rtol=rtol)  # what this replay compared with, whatever the file said
    saved_dir = str(meta.get("models_dir", ""))
    if not saved_dir or Path(saved_dir).resolve() != Path(models_dir).resolve():
        raise DataError(
            f"{path} was saved for the models folder {saved_dir!r}, not {str(models_dir)!r}: "
            "pass --models with the folder you trust"
        )
    try:
        runtime_class(runtime)  # an unknown runtime name is a one-line error, not a lookup failure later
    except PoolkitError as exc:
        raise DataError(f"{path}: {exc}") from None
    if device not in DEVICES:
        raise DataError(f"{path} names device {device!r} (known: {', '.join(DEVICES)})")
    known = {r.name for r in load_manifest(Path(models_dir), required=True)}
    if model_name not in known:  # an artifact name, never resolved as a spec or a PATH.py of code
        raise DataError(f"{path} names the model '{model_name}', which {models_dir}/manifest.json does not have")
    (model,) = open_artifacts(Path(models_dir), [model_name], trust=trust)
    with model.open(runtime, device) as rt:
        try:
            actual = run_batch(rt, x)
        except Exception as exc:  # noqa: BLE001 - e.g. the file was re-exported with another fixed shape
            shape = "x".join(map(str, x.shape))
            raise DataError(
                f"{path}: {runtime} cannot run its {shape} batch on {model.name}: {one_line(exc)}"
            ) from None
    if len(actual) != len(expected):
        raise DataError(f"{path} holds {len(expected)} outputs but the artifact gives {len(actual)}")
    results = []
    for e, a in zip(expected, actual, strict=True):
        acc = Accumulator(atol, rtol)
        acc.add(e, a, first)
        results.append(acc.result)
    return meta, results
