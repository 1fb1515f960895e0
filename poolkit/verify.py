"""`poolkit verify`: every artifact in the manifest against eager PyTorch, batch by batch.

For each artifact: check its sha256 (and its weights'), rebuild the eager module from spec + saved
weights, run the same batches through eager and the artifact's runtime on each device, and fold
the differences into one `Comparison` per output. A failure saves its first failing batch as
`.npz` with a one-command replay, and, for a model with layers, names the first layer whose
output diverges. Verify only loops and collects; runtimes and the comparator do the work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.manifest import ExportRecord, load_manifest
from exporter.spec import parse_spec
from poolkit.cifar10 import IMAGE_SHAPE, DataSource, ImageSet, synthetic_images
from poolkit.compare import DEFAULT_ATOL, DEFAULT_RTOL, Accumulator, Comparison
from poolkit.errors import DataError, PoolkitError, one_line
from poolkit.files import sha256_file, write_atomic
from runtimes.base import Artifact, cuda_problem, layer_outputs, open_runtime, run_batch

if TYPE_CHECKING:
    import numpy as np

FORMAT_RUNTIME = {"torchscript": "torchscript", "onnx": "onnxruntime", "eager": "eager"}


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


def select_records(models_dir: Path, names: list[str] | None) -> list[ExportRecord]:
    """The manifest's records, or those of the named models; an unknown name is a usage error."""
    records = load_manifest(models_dir, required=True)
    if not names:
        return records
    known = {r.name for r in records}
    wanted = set()
    for name in names:
        if name in known:
            wanted.add(name)
            continue
        from exporter.zoo import resolve_model  # a spec string names its spec_<hash> artifacts

        try:
            ref_name = resolve_model(name).name
        except PoolkitError:
            ref_name = None
        if ref_name not in known:
            raise DataError(
                f"no artifact named '{name}' in {models_dir}/manifest.json (has: {', '.join(sorted(known))})"
            )
        wanted.add(ref_name)
    return [r for r in records if r.name in wanted]


def check_files(record: ExportRecord, models_dir: Path) -> str | None:
    """Why an artifact cannot be trusted before running it, or None."""
    if not record.ok:
        return f"export failed: {record.error}"
    for label, name, digest in (
        ("artifact", record.path, record.sha256),
        ("weights", record.weights, record.weights_sha256),
    ):
        if not name:
            continue
        path = models_dir / name
        if not path.is_file():
            return f"{label} file missing: {path}"
        actual = sha256_file(path)
        if digest and actual != digest:
            return f"sha256 mismatch for {path}: manifest says {digest[:12]}…, file is {actual[:12]}… (changed after export)"
    return None


def verify(
    models_dir: Path,
    images: ImageSet,
    options: VerifyOptions,
    names: list[str] | None = None,
    environment: dict[str, Any] | None = None,
    on_batch: Callable[[str], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify every selected artifact on every requested device."""
    models_dir = Path(models_dir)
    records = select_records(models_dir, names)
    cuda_reasons: dict[str, str | None] = {}
    # On CUDA, eager itself is checked too: eager on the GPU against eager on the CPU.
    eager_on_cuda = [_as_eager(r) for r in _one_per_model(records)] if "cuda" in options.devices else []
    if on_rows:
        n_rows = len(records) * len(options.devices) + len(eager_on_cuda)
        on_rows(n_rows * images.count_batches(options.batch_size, options.batches))
    rows = []
    for record, devices in [(r, options.devices) for r in records] + [(r, ("cuda",)) for r in eager_on_cuda]:
        problem = check_files(record, models_dir)  # hash each file once, whatever the devices
        for device in devices:
            row = VerifyRow(
                record.name, record.format, FORMAT_RUNTIME.get(record.format, "?"), device, record.spec, "failed"
            )
            rows.append(row)
            if device == "cuda" and row.runtime not in cuda_reasons:
                cuda_reasons[row.runtime] = cuda_problem([row.runtime])
            if device == "cuda" and cuda_reasons[row.runtime]:
                row.status, row.reason = "unavailable", cuda_reasons[row.runtime]
            elif problem:
                row.reason = problem
            else:
                data = _data_for(record, images)
                if isinstance(data, str):
                    row.reason = data
                else:
                    _run_row(row, record, Artifact(record, models_dir), data, options, on_batch)
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


def _one_per_model(records: list[ExportRecord]) -> list[ExportRecord]:
    firsts: dict[str, ExportRecord] = {}
    for r in records:
        if r.ok:
            firsts.setdefault(r.name, r)
    return list(firsts.values())


def _as_eager(record: ExportRecord) -> ExportRecord:
    """A pseudo-record for eager itself: same spec and weights, no artifact file of its own."""
    from dataclasses import replace

    return replace(record, format="eager", method="eager", path=None, sha256=None, opset=None)


def _data_for(record: ExportRecord, images: ImageSet) -> ImageSet | str:
    """The images an artifact can take, or why it cannot take CIFAR10's."""
    if record.sample_shape == IMAGE_SHAPE:
        return images
    if images.source.kind == "synthetic":
        return synthetic_images(len(images.images), record.sample_shape)
    shape = "x".join(map(str, record.sample_shape))
    return f"input {shape} is not a 3x32x32 CIFAR10 image; verify it with --data synthetic"


def _run_row(
    row: VerifyRow,
    record: ExportRecord,
    artifact: Artifact,
    data: ImageSet,
    options: VerifyOptions,
    on_batch: Callable[[str], None] | None,
) -> None:
    start = time.perf_counter()
    static_batch = None if record.dynamic_batch else int(record.input_shape[0])
    batch_size = static_batch or options.batch_size
    try:
        reference = open_runtime("eager", artifact, "cpu")
        runtime = open_runtime(row.runtime, artifact, row.device)
    except PoolkitError as exc:
        row.reason = str(exc)
        return
    row.provider = runtime.provider
    accumulators: list[Accumulator] = []
    first_failure = None
    try:
        for first, x, _ in data.batches(batch_size, options.batches):
            if on_batch:
                on_batch(f"{row.model} {row.format} {row.device}")
            if len(x) != batch_size and static_batch:
                row.skipped_images += len(x)  # a static-batch file cannot take the short last batch
                continue
            expected = run_batch(reference, x)
            actual = run_batch(runtime, x)
            if len(actual) != len(expected):
                row.reason = f"{len(actual)} outputs, eager gives {len(expected)}"
                return
            accumulators = accumulators or [Accumulator(options.atol, options.rtol) for _ in expected]
            # a list, not a generator: every output's accumulator must see the batch
            batch_ok = all([acc.add(e, a, first) for acc, e, a in zip(accumulators, expected, actual, strict=True)])
            row.batches += 1
            row.images += len(x)
            if not batch_ok and first_failure is None:
                first_failure = (first, x, expected, actual)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file is a failed row
        row.reason = f"{row.runtime} failed to run: {one_line(exc)}"
        return
    finally:
        runtime.close()
        reference.close()
        row.seconds = round(time.perf_counter() - start, 3)
    row.outputs = [acc.result for acc in accumulators]
    if row.outputs and all(row.outputs):
        row.status = "passed"
        return
    if not row.outputs:
        row.reason = "no batch could be compared"
        return
    worst = row.worst
    row.reason = (
        "output shape differs from eager"
        if any(c.shape_mismatch for c in row.outputs)
        else f"{sum(c.mismatched for c in row.outputs):,} elements out of tolerance"
    )
    if worst is not None and (worst.nan_actual or worst.nan_expected):
        row.reason += f" (NaN: {worst.nan_actual} in the artifact's output, {worst.nan_expected} in eager's)"
    if first_failure is not None:
        first, x, expected, actual = first_failure
        row.failing_batch, row.replay = save_failure(row, artifact, first, x, expected, actual, options)
        if row.device == "cpu":
            row.diverging_layer = first_diverging_layer(row.runtime, artifact, x, options.atol, options.rtol)


def first_diverging_layer(runtime: str, artifact: Artifact, x: np.ndarray, atol: float, rtol: float) -> str:
    """Compare layer by layer; name the first whose output differs (with its spec text)."""
    from poolkit.compare import compare

    try:
        expected = layer_outputs("eager", artifact, x)
        actual = dict(layer_outputs(runtime, artifact, x))
    except Exception as exc:  # noqa: BLE001 - localisation is a bonus; say why it is missing
        return f"unknown (layer outputs unavailable: {one_line(exc)})"
    layers = parse_spec(artifact.record.spec).layers
    for index, (name, outs) in enumerate(expected):
        if name not in actual:
            continue  # folded away by the exporter: nothing to compare
        if len(actual[name]) != len(outs) or not all(
            compare(e, a, atol, rtol) for e, a in zip(outs, actual[name], strict=True)
        ):
            return f"{name} (layer {index + 1}: {layers[index]})"
    return "none: every layer matches on its own, the difference builds up across layers"


def save_failure(
    row: VerifyRow,
    artifact: Artifact,
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
        "models_dir": str(artifact.models_dir),
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
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)

    write_atomic(path, write)
    return str(path), f"poolkit verify --replay {path}"


def replay(path: Path) -> tuple[dict[str, Any], list[Comparison]]:
    """Run a saved failing batch again through the same artifact and runtime; compare with the saved eager output."""
    import numpy as np

    try:
        saved = np.load(path, allow_pickle=False)
        meta = json.loads(str(saved["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path} is not a poolkit failing-batch file ({type(exc).__name__})") from None
    models_dir = Path(meta["models_dir"])
    records = load_manifest(models_dir, required=True)
    if meta["format"] == "eager":  # eager on CUDA: rebuilt from the spec + weights of any artifact of the model
        record = next((_as_eager(r) for r in _one_per_model(records) if r.name == meta["model"]), None)
    else:
        record = next((r for r in records if (r.name, r.format) == (meta["model"], meta["format"])), None)
    if record is None:
        raise DataError(f"{meta['model']} {meta['format']} is no longer in {models_dir}/manifest.json")
    runtime = open_runtime(meta["runtime"], Artifact(record, models_dir), meta["device"])
    try:
        actual = run_batch(runtime, saved["input"])
    finally:
        runtime.close()
    results = []
    for i, a in enumerate(actual):
        acc = Accumulator(meta["atol"], meta["rtol"])
        acc.add(saved[f"expected_{i}"], a, meta["first_image"])
        results.append(acc.result)
    return meta, results
