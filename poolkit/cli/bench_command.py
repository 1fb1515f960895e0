"""`poolkit bench`: time every runtime on every device, honestly."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import (
    Device,
    JsonOpt,
    ModelOpt,
    RuntimeOpt,
    devices_for,
    parse_ints,
    parse_runtimes,
)
from poolkit.cli.run_scope import results_folder
from poolkit.common.errors import EXIT_FAILED, EXIT_OK, PoolkitError
from poolkit.common.limits import MAX_BATCH, MAX_ITERS, MAX_SECONDS, MAX_THREADS


class OnOff(StrEnum):
    on = "on"
    off = "off"


@app.command()
@handles_errors
def bench(
    device: Annotated[Device, typer.Option(help="cpu, cuda, or all (CUDA rows say 'unavailable' and why).")] = (
        Device.cpu  # type: ignore[attr-defined]
    ),
    model: ModelOpt = None,
    runtime: RuntimeOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Images per batch.")] = 64,
    batch_sizes: Annotated[list[str] | None, typer.Option(help="Several batch sizes, e.g. 1,16,64,256.")] = None,
    warmup: Annotated[int, typer.Option(min=0, max=MAX_ITERS, help="Uncounted runs after the first.")] = 10,
    iters: Annotated[int | None, typer.Option(min=1, max=MAX_ITERS, help="Counted runs (default 100).")] = None,
    min_time: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=MAX_SECONDS,
            help="Adaptive: at least this many seconds per row, then until --ci-target is met.",
        ),
    ] = None,
    ci_target: Annotated[
        float | None,
        typer.Option(min=0.001, max=1.0, help="Adaptive: width of the median's 95% interval, share of it (0.05)."),
    ] = None,
    max_time: Annotated[
        float | None, typer.Option(min=0.0, max=MAX_SECONDS, help="Adaptive: stop narrowing after this long.")
    ] = None,
    in_process: Annotated[
        bool, typer.Option(help="Time every runtime in this process (debugging); default: a worker process each.")
    ] = False,
    ort_spinning: Annotated[
        OnOff | None, typer.Option(help="ONNX Runtime intra-op spinning (default: on when isolated, off in-process).")
    ] = None,
    cuda_graphs: Annotated[
        bool, typer.Option(help="CUDA rows: replay a CUDA graph (torch) / ORT enable_cuda_graph.")
    ] = False,
    threads: Annotated[
        list[str] | None,
        typer.Option(help="Threads for every runtime (default: usable cores); several (1,2) time each row at each."),
    ] = None,
    models: Annotated[Path, typer.Option(help="Folder with manifest.json; missing models are exported there.")] = Path(
        "models"
    ),
    out: Annotated[
        Path | None, typer.Option(help="Folder for bench.json, .csv, .png (default: a new run in results/runs/).")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", "--compare", help="An earlier bench.json: each row is tested for a change since it."
        ),
    ] = None,
    self_check: Annotated[
        bool,
        typer.Option(
            help="Check poolkit's eager p50 against torch.utils.benchmark, its isolated ORT p50 and end-to-end "
            "against a plain ORT loop, and eager's tail beside a spinning ORT against eager alone."
        ),
    ] = False,
    precision: Annotated[
        bool,
        typer.Option(
            "--precision",
            help="Also a row per precision variant (export --precision) each runtime reads, timed beside its fp32"
            " row in the same workers and rounds, outputs checked at its own precision (bench.json: 'vs fp32').",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> int:
    """Time eager, TorchScript and ONNX Runtime per model, runtime, device and batch size (default runtimes:
    eager, torchscript, onnxruntime)."""
    # lazily: the bench package imports numpy and the exporter; `poolkit --help` must stay instant
    from poolkit.bench.measurement import BenchSettings
    from poolkit.bench.run import Progress, run_bench_command
    from poolkit.bench.selfcheck import run_self_check
    from poolkit.cli.output import print_bench, print_self_check, progress_callbacks
    from poolkit.runtimes.registry import DEFAULT_RUNTIMES

    counts = parse_ints(threads, "--threads", "1,2", maximum=MAX_THREADS) if threads else ()
    settings = BenchSettings(
        devices=devices_for(device),
        runtimes=parse_runtimes(runtime, DEFAULT_RUNTIMES),
        batch_sizes=parse_ints(batch_sizes, "--batch-sizes", "1,16,64,256") if batch_sizes else (batch_size,),
        warmup=warmup,
        iters=iters if iters is not None or min_time is not None else 100,
        min_time_s=min_time,
        threads=counts[0] if counts else None,
        thread_counts=counts if len(counts) > 1 else (),
        in_process=in_process,
        ort_spinning=None if ort_spinning is None else ort_spinning == OnOff.on,
        cuda_graphs=cuda_graphs,
        ci_target=adaptive_target(min_time, max_time, ci_target),
        max_time_s=max_time,
        precision=precision,
    )
    if self_check:  # prints its verdict, writes nothing
        if precision:
            raise PoolkitError("--self-check times the fp32 model against plain loops: drop --precision")
        check = run_self_check(models, model, settings.threads, settings.batch_sizes[0])
        print_self_check(check, json_out)
        return EXIT_OK if check["all_passed"] else EXIT_FAILED
    folder = results_folder("bench", out, "--out")
    with progress_callbacks("bench", rate="rounds") as (on_total, on_step):
        progress = Progress(on_total, on_step)
        run = run_bench_command(models, model, settings, folder, baseline, progress)
    print_bench(run, baseline, json_out)
    return EXIT_FAILED if run.failed else EXIT_OK


def adaptive_target(min_time: float | None, max_time: float | None, ci_target: float | None) -> float:
    """--ci-target and --max-time steer adaptive timing only: without --min-time they would be ignored."""
    if min_time is None and (ci_target is not None or max_time is not None):
        given = "--ci-target" if ci_target is not None else "--max-time"
        raise PoolkitError(f"{given} applies to adaptive timing only: add --min-time SECONDS")
    if min_time is not None and max_time is not None and max_time < min_time:
        raise PoolkitError(f"--max-time {max_time:g} is shorter than --min-time {min_time:g}")
    from poolkit.bench.measurement import BenchSettings  # lazily, as in bench()

    return BenchSettings.ci_target if ci_target is None else ci_target
