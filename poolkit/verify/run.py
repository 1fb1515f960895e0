"""`poolkit verify`: every artifact of a models folder against eager PyTorch, batch by batch.

Per model: open its artifacts (hashes checked, eager rebuilt from spec + saved weights, see
`services/artifacts.py`), and for every input set (`inputs.py`: raw and normalised CIFAR10, an edge
batch, and for artifacts that take any size an odd size and the tutorials' small examples) run each
batch once through eager on the CPU, then feed the same batch to every runtime and device asked
for, folding the differences into one `Comparison` per output and set. Beside eager, on the same
batch: the sensitivity variants (`sensitivity.py`: would this data catch a wrong artifact?)
and the fp64 noise floor (`tolerance.py`). A failure saves its first failing batch as
`.npz` with a one-command replay, an error heatmap per channel, and names the first layer whose
output diverges (`failure.py`). This module only loops; one row's folding and verdict are in
`rows.py`, the result types in `report.py`; runtimes and the comparator do the work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import write_json_atomic
from poolkit.exporter.ensure import ensure_exported, refs_named
from poolkit.runtimes.base import Runtime, run_batch
from poolkit.runtimes.registry import DEFAULT_RUNTIMES, cuda_problem, formats_read, require_cuda, runtime_class
from poolkit.services.artifacts import ModelArtifacts, open_artifacts
from poolkit.services.cifar10 import ImageSet, load_images
from poolkit.services.environment import environment
from poolkit.services.image_fit import fit_images
from poolkit.verify.inputs import InputSet, build_input_sets
from poolkit.verify.precision import Fp64Reference
from poolkit.verify.report import InputRun, VerifyOptions, VerifyReport, VerifyRow
from poolkit.verify.rows import OpenRow, conclude_row, fold_row
from poolkit.verify.sensitivity import SensitivityCheck, SensitivityResult
from poolkit.verify.tolerance import NoiseFloor, guidance
from poolkit.verify.variants import verify_precisions

NOISE_IMAGES = 16  # images of each set's first batch that also run through the fp64 copy of eager


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
    """What `poolkit verify` does: check CUDA first when only CUDA was asked for, load the data, export
    what the named models lack, verify, and write the JSON report (atomically). Returns the report and where it was written."""
    if options.devices == ("cuda",):
        require_cuda([r for r, _ in row_plan(options.runtimes or DEFAULT_RUNTIMES, options.devices)])
    images = load_images(data, data_root, download)
    exported = []
    if names:  # the models named: exported if missing, and the formats named runtimes read (`-r aoti`)
        exported = ensure_exported(
            refs_named(names, Path(models_dir)), Path(models_dir), formats_read(options.runtimes)
        )
    report = verify(models_dir, images, options, names, environment(), on_batch, on_rows)
    report.exported = exported
    return report, write_json_atomic(report_path or Path(options.results_dir) / "verify.json", report)


def row_plan(runtimes: tuple[str, ...], devices: tuple[str, ...]) -> list[tuple[str, str]]:
    """(runtime, device) pairs to check. Eager on the CPU is the reference itself, so it is never a row;
    with CUDA asked for, eager on the GPU is checked against eager on the CPU too."""
    wanted = list(runtimes) + (["eager"] if "cuda" in devices and "eager" not in runtimes else [])
    return [(r, d) for r in wanted for d in devices if not (r == "eager" and d == "cpu")]


class InputSetCache:
    """Input sets built once per (sample shape, dynamic) and shared by every model that takes them.

    Images are fitted to each model's input (`services/image_fit.py`: resized, grayscale for one
    channel); only the first `count` are fitted when `--batches` limits the run."""

    def __init__(self, images: ImageSet, wanted: tuple[str, ...], count: int | None = None) -> None:
        self.images, self.wanted, self.count = images, wanted, count
        self._built: dict[tuple[tuple[int, ...], bool], list[InputSet] | str] = {}
        self.fits: dict[tuple[int, ...], str] = {}  # sample shape -> how the images were fitted to it

    def get(self, sample_shape: tuple[int, ...], dynamic: bool) -> list[InputSet] | str:
        key = (tuple(sample_shape), dynamic)
        if key not in self._built:
            try:
                data = fit_images(self.images, key[0], self.count)
            except DataError as exc:
                self._built[key] = str(exc)
            else:
                self.fits[key[0]] = data.source.fit
                self._built[key] = build_input_sets(data, key[0], dynamic, self.wanted)
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
    plans = {m.name: row_plan(options.runtimes or m.readers(), options.devices) for m in models}
    cuda_reasons = {r: cuda_problem([r]) for plan in plans.values() for r, d in plan if d == "cuda"}
    cache = InputSetCache(images, options.inputs, options.batch_size * options.batches if options.batches else None)
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
        rows, found = verify_model(model, cache, options, plans[model.name], cuda_reasons, on_batch)
        report.rows.extend(rows)
        report.sensitivity.extend(found)
        ref = model.reference
        if ref is not None and cache.fits.get(tuple(ref.sample_shape)):
            report.data_fits[model.name] = cache.fits[tuple(ref.sample_shape)]
        report.precisions.extend(verify_precisions(model, images, options.devices, options.batch_size))
    report.input_sets = cache.described()
    return report


def _count_batches(model: ModelArtifacts, cache: InputSetCache, options: VerifyOptions) -> int:
    ref = model.reference
    sets = cache.get(ref.sample_shape, ref.dynamic_spatial) if ref else []
    return sum(s.count_batches(options.batch_size, options.batches) for s in sets) if isinstance(sets, list) else 0


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
            row.provider, row.precision = runtime.provider, runtime.precision
            static = None if record.dynamic_batch else int(record.input_shape[0])
            any_size = record.dynamic_spatial or cls.reads == "module"
            live.append(OpenRow(row, runtime, static, record.sample_shape, any_size))
        if live and isinstance(sets, list):
            found = _run_sets(model, live, sets, options, on_batch)
    if live and isinstance(sets, list):
        for item in live:
            conclude_row(item, model, options)
    elif on_batch and isinstance(sets, list):
        for _ in range(sum(s.count_batches(options.batch_size, options.batches) for s in sets)):
            on_batch(model.name)
    return rows, found


def _run_sets(
    model: ModelArtifacts,
    live: list[OpenRow],
    sets: list[InputSet],
    options: VerifyOptions,
    on_batch: Callable[[str], None] | None,
) -> list[SensitivityResult]:
    """Every batch of every set: eager once, the sensitivity variants and fp64 noise beside it, then each row."""
    module = model.eager_module()
    # Both call the module on one array: a model of your own with several inputs has neither (yet).
    single_input = model.reference is None or len(model.reference.sample_shapes) == 1
    check = (
        SensitivityCheck(model.name, module, options.atol, options.rtol, mode=options.sensitivity, rows=len(live))
        if options.sensitivity != "off" and single_input
        else None
    )
    noise = NoiseFloor(module, options.rtol) if single_input else None
    fp64 = Fp64Reference(module) if single_input else None  # computes only where a strict check fails
    own: dict[str, Fp64Reference] = {}  # eager under autocast per reduced precision a row computes in
    for item in live:
        item.fp64 = fp64
        precision = getattr(item.runtime, "precision", "fp32")
        if fp64 is not None and precision in ("bf16", "fp16"):
            item.own = own.setdefault(precision, Fp64Reference(module, precision))
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
                    fold_row(item, input_set.name, first, x, expected, options)
        for item in live:
            item.row.guidance = guidance(
                [c for acc in item.accumulators.values() for c in (a.result for a in acc)],
                options.atol,
                options.rtol,
                noise,
            )
    return check.finish() if check is not None else []


def runtime_for_reference(model: ModelArtifacts) -> Runtime:
    """Eager on the CPU, the reference of every row."""
    return model.open("eager", "cpu")
