"""`poolkit verify`: every artifact of a models folder against eager PyTorch, batch by batch.

Per model: open its artifacts (hashes checked, eager rebuilt from spec + saved weights, see
`artifacts.py`), and for every input set (`verify_inputs.py`: raw and normalised CIFAR10, an edge
batch, and for artifacts that take any size an odd size and the seeds' small examples) run each
batch once through eager on the CPU, then feed the same batch to every runtime and device asked
for, folding the differences into one `Comparison` per output and set. Beside eager, on the same
batch: the sensitivity variants (`verify_sensitivity.py`: would this data catch a wrong artifact?)
and the fp64 noise floor (`verify_tolerance.py`). A failure saves its first failing batch as
`.npz` with a one-command replay, an error heatmap per channel, and names the first layer whose
output diverges. Verify only loops and collects; runtimes and the comparator do the work.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import write_atomic
from poolkit.common.names import check_name
from poolkit.exporter.manifest import load_manifest
from poolkit.exporter.spec import parse_spec
from poolkit.runtimes.base import DEVICES, Runtime, run_batch
from poolkit.runtimes.registry import cuda_problem, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.cifar10 import IMAGE_SHAPE, DataSource, ImageSet, synthetic_images
from poolkit.services.comparator import DEFAULT_ATOL, DEFAULT_RTOL, Accumulator, Comparison, fold_batch, mismatch_reason
from poolkit.verify.heatmap import write_heatmaps
from poolkit.verify.inputs import DEFAULT_INPUT_SETS, InputSet, build_input_sets
from poolkit.verify.sensitivity import SensitivityCheck, SensitivityResult
from poolkit.verify.tolerance import Guidance, NoiseFloor, guidance

if TYPE_CHECKING:
    import numpy as np

DEFAULT_VERIFY_RUNTIMES = ("torchscript", "onnxruntime")
NOISE_IMAGES = 16  # images of each set's first batch that also run through the fp64 copy of eager


@dataclass
class InputRun:
    """One input set through one row: which sizes ran, and how the outputs compared on it."""

    name: str
    sizes: list[str] = field(default_factory=list)
    images: int = 0
    batches: int = 0
    skipped: list[str] = field(default_factory=list)  # sizes or batches this row could not take, and why
    outputs: list[Comparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(self.outputs)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.outputs), default=0.0)


@dataclass
class VerifyRow:
    """One artifact on one runtime and device, over every input set."""

    model: str
    format: str
    runtime: str
    device: str
    spec: str
    status: str  # passed | failed | unavailable
    reason: str | None = None
    provider: str | None = None
    outputs: list[Comparison] = field(default_factory=list)  # on `worst_input`: the failing set, else the worst
    batches: int = 0
    images: int = 0
    skipped_images: int = 0
    diverging_layer: str | None = None
    failing_batch: str | None = None
    replay: str | None = None
    seconds: float = 0.0
    inputs: list[InputRun] = field(default_factory=list)
    worst_input: str | None = None
    guidance: Guidance | None = None
    heatmap: str | None = None
    tensorboard: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def worst(self) -> Comparison | None:
        return max(self.outputs, key=lambda c: c.max_abs, default=None)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs if i.batches]


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
    input_sets: dict[str, str] = field(default_factory=dict)  # name -> what it is
    sensitivity: list[SensitivityResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed or r.status == "unavailable" for r in self.rows)

    @property
    def summary(self) -> dict[str, int]:
        counts = {"rows": len(self.rows), "passed": 0, "failed": 0, "unavailable": 0}
        for r in self.rows:
            counts[r.status] += 1
        return counts

    @property
    def warnings(self) -> list[str]:
        """Sensitivity gaps and tolerance warnings, each once, named by model."""
        out = [f"{s.model}: {s.warning}" for s in self.sensitivity if s.warning]
        for r in self.rows:
            for w in r.guidance.warnings if r.guidance else []:
                out.append(f"{r.model} {r.format} {r.runtime} {r.device}: {w}")
        return out

    def __json__(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**plain, "passed": self.passed, "summary": self.summary, "warnings": self.warnings}


@dataclass
class VerifyOptions:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    batch_size: int = 64
    batches: int | None = None  # None: all
    devices: tuple[str, ...] = ("cpu",)
    results_dir: Path = Path("results")
    runtimes: tuple[str, ...] = DEFAULT_VERIFY_RUNTIMES
    inputs: tuple[str, ...] = DEFAULT_INPUT_SETS
    sensitivity: bool = True
    heatmaps: bool = True


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
    from poolkit.common.files import write_json_atomic
    from poolkit.runtimes.registry import require_cuda
    from poolkit.services.cifar10 import load_images
    from poolkit.services.environment import environment

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


class InputSetCache:
    """Input sets built once per (sample shape, dynamic) and shared by every model that takes them."""

    def __init__(self, images: ImageSet, wanted: tuple[str, ...]) -> None:
        self.images, self.wanted = images, wanted
        self._built: dict[tuple[tuple[int, ...], bool], list[InputSet] | str] = {}

    def get(self, sample_shape: tuple[int, ...], dynamic: bool) -> list[InputSet] | str:
        key = (sample_shape, dynamic)
        if key not in self._built:
            data = _data_for(sample_shape, self.images)
            self._built[key] = (
                data if isinstance(data, str) else build_input_sets(data, sample_shape, dynamic, self.wanted)
            )
        return self._built[key]

    def described(self) -> dict[str, str]:
        """Every set built so far, name -> what it is, in the order they were asked for."""
        out: dict[str, str] = {}
        for sets in self._built.values():
            for s in sets if isinstance(sets, list) else []:
                out.setdefault(s.name, s.about)
        return out


def verify(
    models_dir: Path,
    images: ImageSet,
    options: VerifyOptions,
    names: list[str] | None = None,
    environment: dict[str, Any] | None = None,
    on_batch: Callable[[str], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify every selected model on every requested runtime and device, on every input set."""
    models = open_artifacts(Path(models_dir), names)
    plan = row_plan(options.runtimes, options.devices)
    cuda_reasons = {r: cuda_problem([r]) for r, d in plan if d == "cuda"}
    cache = InputSetCache(images, options.inputs)
    if on_rows:
        on_rows(sum(_count_batches(m, cache, options) for m in models))
    report = VerifyReport(
        data=images.source,
        atol=options.atol,
        rtol=options.rtol,
        batch_size=options.batch_size,
        batches_limit=options.batches,
        devices=list(options.devices),
        environment=environment or {},
        rows=[],
    )
    for model in models:
        rows, found = verify_model(model, cache, options, plan, cuda_reasons, on_batch)
        report.rows.extend(rows)
        report.sensitivity.extend(found)
    report.input_sets = cache.described()
    return report


def _count_batches(model: ModelArtifacts, cache: InputSetCache, options: VerifyOptions) -> int:
    ref = model.reference
    sets = cache.get(ref.sample_shape, ref.dynamic_spatial) if ref else []
    return sum(s.count_batches(options.batch_size, options.batches) for s in sets) if isinstance(sets, list) else 0


@dataclass
class _Live:
    """A row being measured: its open runtime, an accumulator list per input set, its first failing batch."""

    row: VerifyRow
    runtime: Runtime
    static_batch: int | None
    sample_shape: tuple[int, ...]
    any_size: bool
    runs: dict[str, InputRun] = field(default_factory=dict)
    accumulators: dict[str, list[Accumulator]] = field(default_factory=dict)
    first_failure: tuple[str, int, np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None
    started: float = field(default_factory=time.perf_counter)
    stopped: bool = False


def verify_model(
    model: ModelArtifacts,
    cache: InputSetCache | ImageSet,
    options: VerifyOptions,
    plan: list[tuple[str, str]],
    cuda_reasons: dict[str, str | None],
    on_batch: Callable[[str], None] | None = None,
) -> tuple[list[VerifyRow], list[SensitivityResult]]:
    """One model: eager runs once per batch; every runtime and device gets the same batch."""
    if isinstance(cache, ImageSet):
        cache = InputSetCache(cache, options.inputs)
    rows, live = [], []
    spec = model.reference.spec if model.reference else next(iter(model.records.values())).spec
    sets: list[InputSet] | str | None = None
    found: list[SensitivityResult] = []
    with contextlib.ExitStack() as opened:  # every runtime opened here is closed, whatever happens
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
            reference = model.reference or record
            sets = sets if sets is not None else cache.get(reference.sample_shape, reference.dynamic_spatial)
            if isinstance(sets, str):
                row.reason = sets
                continue
            try:
                runtime = opened.enter_context(model.open(runtime_name, device))
            except PoolkitError as exc:
                row.reason = str(exc)
                continue
            row.provider = runtime.provider
            static = None if record.dynamic_batch else int(record.input_shape[0])
            any_size = record.dynamic_spatial or cls.reads == "module"
            live.append(_Live(row, runtime, static, record.sample_shape, any_size))
        if live and isinstance(sets, list):
            found = _run_sets(model, live, sets, options, on_batch)
    if live and isinstance(sets, list):
        for item in live:
            _conclude(item, model, options)
    elif on_batch and isinstance(sets, list):
        for _ in range(sum(s.count_batches(options.batch_size, options.batches) for s in sets)):
            on_batch(model.name)
    return rows, found


def _run_sets(
    model: ModelArtifacts,
    live: list[_Live],
    sets: list[InputSet],
    options: VerifyOptions,
    on_batch: Callable[[str], None] | None,
) -> list[SensitivityResult]:
    """Every batch of every set: eager once, the sensitivity variants and fp64 noise beside it, then each row."""
    module = model.eager_module()
    # Both call the module on one array: a model of your own with several inputs has neither (yet).
    single_input = model.reference is None or len(model.reference.sample_shapes) == 1
    check = (
        SensitivityCheck(model.name, module, options.atol, options.rtol)
        if options.sensitivity and single_input
        else None
    )
    noise = NoiseFloor(module, options.rtol) if single_input else None
    refused: dict[tuple[str, tuple[int, ...]], str] = {}
    with runtime_for_reference(model) as reference:
        for input_set in sets:
            for first, x in input_set.batches(options.batch_size, options.batches):
                if on_batch:
                    on_batch(model.name)
                size = tuple(x.shape[1:])
                key = (input_set.name, size)
                if key in refused:
                    continue
                try:
                    expected = run_batch(reference, x)
                except Exception as exc:  # noqa: BLE001 - a size the module itself refuses is skipped, said why
                    refused[key] = f"{'x'.join(map(str, size[1:]))}: the model itself refuses it ({one_line(exc)[:80]})"
                    for item in live:
                        item.runs.setdefault(input_set.name, InputRun(input_set.name)).skipped.append(refused[key])
                    continue
                if check is not None:
                    check.add(input_set.name, x, expected)
                if first == 0 and noise is not None:  # the reference's rounding: a few images per set measure it
                    noise.add(x[:NOISE_IMAGES], [e[:NOISE_IMAGES] for e in expected])
                for item in live:
                    _fold(item, input_set.name, first, x, expected, options)
        for item in live:
            item.row.guidance = guidance(
                [c for acc in item.accumulators.values() for c in (a.result for a in acc)],
                options.atol,
                options.rtol,
                noise,
            )
    return check.finish() if check is not None else []


def _fold(
    item: _Live, set_name: str, first: int, x: np.ndarray, expected: list[np.ndarray], options: VerifyOptions
) -> None:
    """One batch of one set through one row."""
    row = item.row
    run = item.runs.setdefault(set_name, InputRun(set_name))
    if item.stopped:
        return
    size = "x".join(map(str, x.shape[2:] or x.shape[1:]))
    if item.static_batch and len(x) != item.static_batch:
        row.skipped_images += len(x)  # a static-batch file cannot take another batch size
        note = f"batches of {len(x)}: the file's batch is fixed to {item.static_batch}"
        if note not in run.skipped:
            run.skipped.append(note)
        return
    if tuple(x.shape[1:]) != item.sample_shape and not item.any_size:
        note = f"{size}: the {row.format} file is fixed to {'x'.join(map(str, item.sample_shape))}"
        if note not in run.skipped:
            run.skipped.append(note)
        return
    try:
        actual = run_batch(item.runtime, x)
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the file is a failed row
        row.reason = f"{row.runtime} failed to run on {set_name} ({size}): {one_line(exc)}"
        item.stopped = True
        return
    accumulators = item.accumulators.setdefault(set_name, [Accumulator(options.atol, options.rtol)])
    structure = fold_batch(expected, actual, accumulators, first)
    if structure:
        row.reason = structure
        item.stopped = True
        return
    if size not in run.sizes:
        run.sizes.append(size)
    run.batches += 1
    run.images += len(x)
    row.batches += 1
    row.images += len(x)
    batch_ok = all(acc.result.mismatched == 0 and not acc.result.shape_mismatch for acc in accumulators)
    if not batch_ok and item.first_failure is None:
        item.first_failure = (set_name, first, x, expected, actual)
    row.seconds = round(time.perf_counter() - item.started, 3)


def runtime_for_reference(model: ModelArtifacts) -> Runtime:
    """Eager on the CPU, the reference of every row."""
    return model.open("eager", "cpu")


def _conclude(item: _Live, model: ModelArtifacts, options: VerifyOptions) -> None:
    row = item.row
    for name, run in item.runs.items():
        run.outputs = [acc.result for acc in item.accumulators.get(name, [])]
    row.inputs = list(item.runs.values())
    if row.reason:  # stopped early: could not run, or a different number of outputs
        return
    ran = [run for run in row.inputs if run.batches]
    if not ran:
        row.reason = "no batch could be compared"
        return
    failing = [run for run in ran if not run.passed]
    worst = failing[0] if failing else max(ran, key=lambda run: run.max_abs)
    row.worst_input, row.outputs = worst.name, worst.outputs
    if not failing:
        row.status = "passed"
        return
    kind, detail = mismatch_reason(row.outputs)
    row.reason = (
        f"output shape differs from eager on {worst.name} ({detail})"
        if kind == "shape"
        else f"{sum(c.mismatched for c in row.outputs):,} elements out of tolerance on {worst.name}"
        + (f" (and on {', '.join(r.name for r in failing[1:])})" if failing[1:] else "")
    )
    bad = row.worst
    if bad is not None and (bad.nan_actual or bad.nan_expected):
        row.reason += f" (NaN: {bad.nan_actual} in the artifact's output, {bad.nan_expected} in eager's)"
    if item.first_failure is not None:
        set_name, first, x, expected, actual = item.first_failure
        row.failing_batch, row.replay = save_failure(row, model, first, x, expected, actual, options, set_name)
        if options.heatmaps:
            stem = Path(row.failing_batch).with_suffix("")
            title = f"{row.model} {row.format} {row.runtime} {row.device} on {set_name}"
            row.heatmap, row.tensorboard = write_heatmaps(stem, title, expected, actual, first)
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
    from poolkit.services.comparator import compare

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
    import numpy as np

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
    from poolkit.verify.replay_file import read_replay

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
