"""`poolkit sweep`: the conformance matrix of conv/pool/activation parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import (
    Device,
    JsonOpt,
    RuntimeOpt,
    choose,
    given_values,
    parse_dtype,
    parse_ints,
    parse_runtimes,
    parse_scheduler,
    parse_shape,
    writable_folder,
)
from poolkit.cli.run_scope import open_run
from poolkit.common.errors import EXIT_OK, PoolkitError
from poolkit.common.limits import MAX_JOBS, MAX_SECONDS

LEGACY_RUNTIMES = {"onnxruntime-cpu": ("onnxruntime", "cpu"), "onnxruntime-cuda": ("onnxruntime", "cuda")}


@app.command()
@handles_errors
def sweep(
    layer: Annotated[
        list[str] | None,
        typer.Option(
            help="conv, maxpool, avgpool, pool1d, pool3d, boundary, adaptive, activation, unpool (default: all)."
        ),
    ] = None,
    exporters: Annotated[
        list[str] | None,
        typer.Option(
            help="Export paths: torchscript-script, torchscript-trace, onnx-dynamo, onnx-legacy (the default);"
            " pt2-export and pt2-aoti (torch.export, AOTInductor: named only, a compile per cell)."
        ),
    ] = None,
    opsets: Annotated[
        list[str] | None,
        typer.Option(
            help="ONNX opsets; 'newest': the newest each exporter and ONNX Runtime accept, measured (default 17,20,newest)."
        ),
    ] = None,
    runtime: RuntimeOpt = None,
    device: Annotated[
        Device | None, typer.Option(help="Where ONNX files run (default: cpu, plus cuda where it works).")
    ] = None,
    runtimes: Annotated[
        list[str] | None, typer.Option(hidden=True, help="Old spelling: onnxruntime-cpu,onnxruntime-cuda.")
    ] = None,
    input_size: Annotated[list[str] | None, typer.Option(help="HxW, repeatable (default 32x32 and 31x31).")] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, max=MAX_JOBS, help="Worker processes (default: all cores).")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=1.0, max=MAX_SECONDS, help="Seconds a cell may take before it is recorded as timeout."),
    ] = 120.0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Path stem: writes STEM.json, STEM.md and the STEM.jsonl journal (default: a new run in"
            " results/runs/, resuming the last sweep run if it was interrupted)."
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore the journal (and old bundles) and run every cell again.")] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run the cells on this dask.distributed scheduler (tcp://HOST:PORT) instead of local workers."
        ),
    ] = None,
    bundles: Annotated[
        bool, typer.Option(help="Write a bundle (model.onnx, test data, repro.py) per failing cell to STEM-bundles/.")
    ] = True,
    dtypes: Annotated[
        list[str] | None,
        typer.Option(help="Dtypes each cell runs in: float32, float16, bfloat16, float64 (default float32)."),
    ] = None,
    json_out: JsonOpt = False,
) -> int:
    """Export, run and compare every conv/pool/activation configuration: a conformance matrix."""
    from poolkit.cli.output import print_sweep, progress_callbacks
    from poolkit.sweep.grid import DEFAULT_EXPORT_PATHS, DEFAULT_OPSETS, EXPORT_PATHS, LAYER_GROUPS
    from poolkit.sweep.run import SweepSettings, run_sweep_command

    scheduler = parse_scheduler(scheduler)
    if scheduler and jobs:
        raise PoolkitError("--jobs sets local workers; with --scheduler the cluster's workers run the cells")
    onnx_runtimes, devices = sweep_targets(runtime, device, runtimes)
    opset_values = given_values(opsets, "--opsets") or [*map(str, DEFAULT_OPSETS), "newest"]
    numbers = [v for v in opset_values if v != "newest"]
    opset_numbers = parse_ints(numbers, "--opsets", "17,20,newest") if numbers else ()
    sizes = tuple(
        parse_shape(s, "--input-size", "32x32") for s in given_values(input_size, "--input-size") or ["32x32", "31x31"]
    )
    if any(s is None or len(s) != 2 for s in sizes):
        raise PoolkitError("bad --input-size: give HxW, like 32x32")
    settings = SweepSettings(
        groups=choose(layer, LAYER_GROUPS, "--layer") if layer and layer != ["all"] else LAYER_GROUPS,
        exports=choose(exporters, EXPORT_PATHS, "--exporters") if exporters else DEFAULT_EXPORT_PATHS,
        opsets=opset_numbers,
        input_sizes=sizes,  # type: ignore[arg-type]
        runtimes=onnx_runtimes,
        devices=devices,
        timeout_s=timeout,
        jobs=jobs,
        newest="newest" in opset_values,
        scheduler=scheduler,
        bundles=bundles,
        dtypes=tuple(dict.fromkeys(parse_dtype(v, "--dtypes") or "float32" for v in given_values(dtypes, "--dtypes")))
        or ("float32",),
    )
    stem = sweep_stem(out, fresh)
    with progress_callbacks("sweep", rate="cells") as (on_total, on_step):
        run = run_sweep_command(settings, stem, fresh, on_total, lambda r: on_step(f"{r.cell.group} {r.outcome}"))
    print_sweep(run, json_out)
    return EXIT_OK


def sweep_stem(out: Path | None, fresh: bool) -> Path:
    """Where the sweep writes: the STEM given (resumed in place, as before), else `conformance` in a
    new run, started from the journal of the last sweep run when that one was interrupted."""
    from poolkit.cli.output import note
    from poolkit.common.runs import interrupted_run, results_root
    from poolkit.sweep.journal import carry_over

    if out is not None:
        writable_folder(Path(out).parent, "--out")
        return Path(out)
    run = open_run("sweep")
    stem = run.folder / "conformance"
    previous = None if fresh else interrupted_run(results_root(), "sweep", besides=run.id)
    if previous is not None and carry_over(previous.folder / "conformance", stem):
        note(
            f"resuming the interrupted sweep run {previous.id} (its results copied into this run; --fresh starts over)"
        )
    return stem


def sweep_targets(
    runtime: list[str] | None, device: Device | None, legacy: list[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """ONNX runtimes and devices: `--runtime`/`--device` (or the old `--runtimes onnxruntime-cpu,...`).

    Without `--device`, CUDA cells run only where CUDA really works; asking for cuda where it does not
    is a usage error, never a silent CPU run.
    """
    from poolkit.runtimes.base import DEVICES
    from poolkit.runtimes.registry import RUNTIMES, cuda_problem, require_cuda

    onnx_readers = tuple(n for n, cls in RUNTIMES.items() if cls.reads == "onnx")
    if legacy:
        pairs = [LEGACY_RUNTIMES[v] for v in choose(legacy, tuple(LEGACY_RUNTIMES), "--runtimes")]
        names, devices = tuple(dict.fromkeys(p[0] for p in pairs)), tuple(dict.fromkeys(p[1] for p in pairs))
    else:
        names = parse_runtimes(runtime, ("onnxruntime",))
        bad = [n for n in names if n not in onnx_readers]
        if bad:
            raise PoolkitError(f"bad --runtime '{bad[0]}': the sweep runs ONNX files on {', '.join(onnx_readers)}")
        if device is None:
            devices = ("cpu",) + (() if cuda_problem(list(names)) else ("cuda",))
        else:
            devices = DEVICES if device.value == "all" else (str(device.value),)
    if "cuda" in devices:
        require_cuda(list(names), "--device cuda")
    return names, devices
