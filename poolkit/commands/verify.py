"""`poolkit verify`: every artifact of a models folder against eager PyTorch, batch by batch.

Per model: open its artifacts (hashes checked, eager rebuilt from spec + saved weights, see
`artifacts.py`), run each batch once through eager on the CPU, and feed the same batch to every
runtime and device asked for, folding the differences into one `Comparison` per output. A failure
saves its first failing batch as `.npz` with a one-command replay, and names the first layer whose
output diverges. Verify only loops and collects; runtimes and the comparator do the work.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.commands.artifacts import ModelArtifacts, open_artifacts
from poolkit.commands.cifar10 import IMAGE_SHAPE, DataSource, ImageSet, synthetic_images
from poolkit.commands.compare import DEFAULT_ATOL, DEFAULT_RTOL, Accumulator, Comparison, fold_batch, mismatch_reason
from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import write_atomic
from poolkit.exporter.spec import parse_spec
from poolkit.runtimes.base import DEVICES, Runtime, run_batch
from poolkit.runtimes.registry import cuda_problem, runtime_class

if TYPE_CHECKING:
    import numpy as np

DEFAULT_VERIFY_RUNTIMES = ("torchscript", "onnxruntime")


@dataclass
class VerifyRow:
    """One artifact on one runtime and device."""

    model: str
    format: str
    runtime: str
    device: str
    spec: str
    status: str  # passed | failed | unavailable
    reason: str | None = None
    provider: str | None = None
    outputs: list[Comparison] = field(default_factory=list)
    batches: int = 0
    images: int = 0
    skipped_images: int = 0
    diverging_layer: str | None = None
    failing_batch: str | None = None
    replay: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def worst(self) -> Comparison | None:
        return max(self.outputs, key=lambda c: c.max_abs, default=None)


@dataclass
class VerifyReport:
    data: DataSource
    atol: float
    rtol: float
    batch_size: int
    batches_limit: int | None
    devices: list[str]
    environment: dict[str, Any]
    rows: list[VerifyRow]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed or r.status == "unavailable" for r in self.rows)

    @property
    def summary(self) -> dict[str, int]:
        counts = {"rows": len(self.rows), "passed": 0, "failed": 0, "unavailable": 0}
        for r in self.rows:
            counts[r.status] += 1
        return counts


@dataclass
class VerifyOptions:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    batch_size: int = 64
    batches: int | None = None  # None: all
    devices: tuple[str, ...] = ("cpu",)
    results_dir: Path = Path("results")
    runtimes: tuple[str, ...] = DEFAULT_VERIFY_RUNTIMES


def run_verify(
    models_dir: Path,
    names: list[str] | None,
    options: VerifyOptions,
    data: str = "cifar10",
    data_root: Path | None = None,
    download: bool = False,
    report_path: Path | None = None,
    on_batch: Callable[[str], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> tuple[VerifyReport, Path]:
    """What `poolkit verify` does: check CUDA first when only CUDA was asked for, load the data,
    verify, and write the JSON report (atomically). Returns the report and where it was written."""
    from poolkit.commands.cifar10 import load_images
    from poolkit.commands.envinfo import environment
    from poolkit.common.files import write_json_atomic
    from poolkit.runtimes.registry import require_cuda

    if options.devices == ("cuda",):
        require_cuda([r for r, _ in row_plan(options.runtimes, options.devices)])
    images = load_images(data, data_root, download)
    report = verify(models_dir, images, options, names, environment(), on_batch, on_rows)
    return report, write_json_atomic(report_path or Path(options.results_dir) / "verify.json", report)


def row_plan(runtimes: tuple[str, ...], devices: tuple[str, ...]) -> list[tuple[str, str]]:
    """(runtime, device) pairs to check. Eager on the CPU is the reference itself, so it is never a row;
    with CUDA asked for, eager on the GPU is checked against eager on the CPU too."""
    wanted = list(runtimes) + (["eager"] if "cuda" in devices and "eager" not in runtimes else [])
    return [(r, d) for r in wanted for d in devices if not (r == "eager" and d == "cpu")]


def verify(
    models_dir: Path,
    images: ImageSet,
    options: VerifyOptions,
    names: list[str] | None = None,
    environment: dict[str, Any] | None = None,
    on_batch: Callable[[str], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify every selected model on every requested runtime and device."""
    models = open_artifacts(Path(models_dir), names)
    plan = row_plan(options.runtimes, options.devices)
    cuda_reasons = {r: cuda_problem([r]) for r, d in plan if d == "cuda"}
    if on_rows:
        on_rows(len(models) * images.count_batches(options.batch_size, options.batches))
    rows: list[VerifyRow] = []
    for model in models:
        rows.extend(verify_model(model, images, options, plan, cuda_reasons, on_batch))
    return VerifyReport(
        data=images.source,
        atol=options.atol,
        rtol=options.rtol,
        batch_size=options.batch_size,
        batches_limit=options.batches,
        devices=list(options.devices),
        environment=environment or {},
        rows=rows,
    )


@dataclass
class _Live:
    """A row being measured: its open runtime, accumulators and first failing batch."""

    row: VerifyRow
    runtime: Runtime
    static_batch: int | None
    accumulators: list[Accumulator]
    first_failure: tuple[int, np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None
    started: float = field(default_factory=time.perf_counter)


def verify_model(
    model: ModelArtifacts,
    images: ImageSet,
    options: VerifyOptions,
    plan: list[tuple[str, str]],
    cuda_reasons: dict[str, str | None],
    on_batch: Callable[[str], None] | None = None,
) -> list[VerifyRow]:
    """One model: eager runs once per batch; every runtime and device gets the same batch."""
    rows, live = [], []
    spec = model.reference.spec if model.reference else next(iter(model.records.values())).spec
    data: ImageSet | str | None = None
    for runtime_name, device in plan:
        cls = runtime_class(runtime_name)
        record = model.record_for(runtime_name)
        row = VerifyRow(model.name, record.format if record and cls.reads != "module" else cls.reads,
                        cls.name, device, spec, "failed")  # fmt: skip
        rows.append(row)
        if device == "cuda" and cuda_reasons.get(runtime_name):
            row.status, row.reason = "unavailable", cuda_reasons[runtime_name]
            continue
        row.reason = model.problem(runtime_name)
        if row.reason or record is None:
            continue
        data = data if data is not None else _data_for(record.sample_shape, images)
        if isinstance(data, str):
            row.reason = data
            continue
        try:
            runtime = model.open(runtime_name, device)
        except PoolkitError as exc:
            row.reason = str(exc)
            continue
        row.provider = runtime.provider
        static = None if record.dynamic_batch else int(record.input_shape[0])
        live.append(_Live(row, runtime, static, [Accumulator(options.atol, options.rtol)]))
    if live and isinstance(data, ImageSet):
        try:
            _run_batches(model, live, data, options, on_batch)
        finally:
            for item in live:
                item.runtime.close()
        for item in live:
            _conclude(item, model, options)
    elif on_batch:
        for _ in range(images.count_batches(options.batch_size, options.batches)):
            on_batch(model.name)
    return rows


def _run_batches(
    model: ModelArtifacts,
    live: list[_Live],
    data: ImageSet,
    options: VerifyOptions,
    on_batch: Callable[[str], None] | None,
) -> None:
    with runtime_for_reference(model) as reference:
        running = list(live)
        for first, x, _ in data.batches(options.batch_size, options.batches):
            if on_batch:
                on_batch(model.name)
            expected = run_batch(reference, x)
            for item in list(running):
                row = item.row
                if item.static_batch and len(x) != item.static_batch:
                    row.skipped_images += len(x)  # a static-batch file cannot take another batch size
                    continue
                try:
                    actual = run_batch(item.runtime, x)
                except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file is a failed row
                    row.reason = f"{row.runtime} failed to run: {one_line(exc)}"
                    running.remove(item)
                    continue
                structure = fold_batch(expected, actual, item.accumulators, first)
                if structure:
                    row.reason = structure
                    running.remove(item)
                    continue
                row.batches += 1
                row.images += len(x)
                batch_ok = all(
                    acc.result.mismatched == 0 and not acc.result.shape_mismatch for acc in item.accumulators
                )
                if not batch_ok and item.first_failure is None:
                    item.first_failure = (first, x, expected, actual)
            for item in running:
                item.row.seconds = round(time.perf_counter() - item.started, 3)


def runtime_for_reference(model: ModelArtifacts) -> Runtime:
    """Eager on the CPU, the reference of every row."""
    return model.open("eager", "cpu")


def _conclude(item: _Live, model: ModelArtifacts, options: VerifyOptions) -> None:
    row = item.row
    if row.reason:  # stopped early: could not run, or a different number of outputs
        return
    row.outputs = [acc.result for acc in item.accumulators]
    if not row.batches:
        row.reason = "no batch could be compared"
        return
    if all(row.outputs):
        row.status = "passed"
        return
    kind, detail = mismatch_reason(row.outputs)
    row.reason = (
        f"output shape differs from eager ({detail})"
        if kind == "shape"
        else f"{sum(c.mismatched for c in row.outputs):,} elements out of tolerance"
    )
    worst = row.worst
    if worst is not None and (worst.nan_actual or worst.nan_expected):
        row.reason += f" (NaN: {worst.nan_actual} in the artifact's output, {worst.nan_expected} in eager's)"
    if item.first_failure is not None:
        first, x, expected, actual = item.first_failure
        row.failing_batch, row.replay = save_failure(row, model, first, x, expected, actual, options)
        if row.device == "cpu":
            row.diverging_layer = first_diverging_layer(row.runtime, model, x, options.atol, options.rtol)


def _data_for(sample_shape: tuple[int, ...], images: ImageSet) -> ImageSet | str:
    """The images an artifact can take, or why it cannot take CIFAR10's."""
    if sample_shape == IMAGE_SHAPE:
        return images
    if images.source.kind == "synthetic":
        return synthetic_images(len(images.images), sample_shape)
    shape = "x".join(map(str, sample_shape))
    return f"input {shape} is not a 3x32x32 CIFAR10 image; verify it with --data synthetic"


def first_diverging_layer(runtime: str, model: ModelArtifacts, x: np.ndarray, atol: float, rtol: float) -> str:
    """Compare layer by layer; name the first whose output differs (with its spec text)."""
    from poolkit.commands.compare import compare

    cls = runtime_class(runtime)
    if not cls.has_layer_outputs:
        return f"unknown ({runtime} cannot report layer outputs)"
    try:
        expected = runtime_class("eager").layer_outputs(model.eager_module(), x)
        actual = dict(cls.layer_outputs(model.source(runtime), x))
    except Exception as exc:  # noqa: BLE001 - localisation is a bonus; say why it is missing
        return f"unknown (layer outputs unavailable: {one_line(exc)})"
    reference = model.reference
    layers = parse_spec(reference.spec).layers if reference and not reference.is_user_model else ()
    for index, (name, outs) in enumerate(expected):
        if name not in actual:
            continue  # folded away by the exporter: nothing to compare
        if len(actual[name]) != len(outs) or not all(
            compare(e, a, atol, rtol) for e, a in zip(outs, actual[name], strict=True)
        ):
            return f"{name} (layer {index + 1}" + (f": {layers[index]})" if index < len(layers) else ")")
    return "none: every layer matches on its own, the difference builds up across layers"


def save_failure(
    row: VerifyRow,
    model: ModelArtifacts,
    first: int,
    x: np.ndarray,
    expected: list[np.ndarray],
    actual: list[np.ndarray],
    options: VerifyOptions,
) -> tuple[str, str]:
    """Write the failing batch as .npz, with what is needed to replay it in one command."""
    import numpy as np

    path = Path(options.results_dir) / "verify_failures" / f"{row.model}.{row.format}.{row.runtime}.{row.device}.npz"
    meta = {
        "models_dir": str(model.models_dir),
        "model": row.model,
        "format": row.format,
        "runtime": row.runtime,
        "device": row.device,
        "first_image": first,
        "atol": options.atol,
        "rtol": options.rtol,
    }
    arrays = {"input": x, **{f"expected_{i}": e for i, e in enumerate(expected)}}
    arrays.update({f"actual_{i}": a for i, a in enumerate(actual)})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]

    write_atomic(path, write)
    return str(path), f"poolkit verify --replay {shlex.quote(str(path))} --models {shlex.quote(str(model.models_dir))}"


def replay_batch(path: Path, models_dir: Path) -> tuple[dict[str, Any], list[Comparison]]:
    """Run a saved failing batch again through the same artifact and runtime; compare with the saved eager output.

    The `.npz` names the models folder it came from, but a file is not trusted to choose what code
    runs: the artifact is opened from `models_dir` (the user's `--models`), the saved folder must be
    that one, and the artifact's hash is checked against its manifest as in any verify.
    """
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            model_name, runtime, device = str(meta["model"]), str(meta["runtime"]), str(meta["device"])
            atol, rtol, first = float(meta["atol"]), float(meta["rtol"]), int(meta["first_image"])
            x = np.asarray(saved["input"], dtype=np.float32)
            expected = [
                saved[f"expected_{i}"] for i in range(len([k for k in saved.files if k.startswith("expected_")]))
            ]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed file fails in many ways, each a data error
        # numpy's own hint (allow_pickle) would run code from the file: never repeat it.
        reason = "it holds pickled objects, not arrays" if "pickle" in str(exc) else one_line(exc)
        raise DataError(f"{path} is not a poolkit failing-batch file ({reason})") from None
    if not expected:
        raise DataError(f"{path} is not a poolkit failing-batch file (no expected outputs)")
    saved_dir = str(meta.get("models_dir", ""))
    if Path(saved_dir).resolve() != Path(models_dir).resolve():
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
    (model,) = open_artifacts(Path(models_dir), [model_name])
    with model.open(runtime, device) as rt:
        actual = run_batch(rt, x)
    if len(actual) != len(expected):
        raise DataError(f"{path} holds {len(expected)} outputs but the artifact gives {len(actual)}")
    results = []
    for e, a in zip(expected, actual, strict=True):
        acc = Accumulator(atol, rtol)
        acc.add(e, a, first)
        results.append(acc.result)
    return meta, results
