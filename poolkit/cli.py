"""The `poolkit` command line: thin Typer commands that call importable functions.

Heavy imports (torch, onnx, onnxruntime) happen inside the command bodies, so `poolkit --help`
stays instant. Every PoolkitError becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from poolkit.errors import EXIT_FAILED, EXIT_OK, PoolkitError

app = typer.Typer(
    name="poolkit",
    help="Build the Tudui conv/pool/activation modules, export them to TorchScript and ONNX, "
    "verify them against eager PyTorch on CIFAR10, and benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn PoolkitError into a one-line message and its exit code: never a traceback for users."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from poolkit.output import error

        try:
            code = fn(*args, **kwargs)
        except PoolkitError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted; files already written are kept")
            raise typer.Exit(130) from None
        raise typer.Exit(code or EXIT_OK)

    return wrapper  # type: ignore[return-value]


ModelOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Zoo name or spec string; repeat for several. Default: the whole zoo."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")]


class Format(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"
    all = "all"


class OnnxExporter(str, Enum):
    dynamo = "dynamo"
    legacy = "legacy"


class JitMethod(str, Enum):
    script = "script"
    trace = "trace"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    all = "all"


class DataKind(str, Enum):
    cifar10 = "cifar10"
    synthetic = "synthetic"


class ShowRuntime(str, Enum):
    eager = "eager"
    torchscript = "torchscript"
    onnx = "onnx"


class Channels(str, Enum):
    gray = "gray"
    rgb = "rgb"


def parse_shape(text: str | None, option: str = "--input-shape", example: str = "3x32x32") -> tuple[int, ...] | None:
    """`3x32x32` -> (3, 32, 32); a per-sample shape, without the batch axis."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise PoolkitError(f"bad {option} '{text}': expected sizes like {example} (no batch axis)") from None
    if not dims or any(d <= 0 for d in dims):
        raise PoolkitError(f"bad {option} '{text}': sizes must be positive, like {example}")
    return dims


@app.command()
@handles_errors
def zoo(
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option(help="Batch size for the output-shape column.", min=1)] = 64,
    json_out: JsonOpt = False,
) -> int:
    """List the named models: spec, torch layers, parameter count and output shape."""
    from exporter.zoo import resolve_models
    from poolkit.output import console, print_json
    from poolkit.render import zoo_table
    from poolkit.zoo_info import describe

    rows = describe(resolve_models(model), batch=batch_size)
    if json_out:
        print_json(rows)
    else:
        console.print(zoo_table(rows, batch_size))
    return EXIT_OK


@app.command()
@handles_errors
def export(
    format: Annotated[Format, typer.Option("--format", "-f", help="Which artifacts to write.")] = Format.all,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for the artifacts and manifest.json.")] = Path("models"),
    opset: Annotated[int | None, typer.Option(help="ONNX opset; default: the exporter's own.", min=7)] = None,
    exporter: Annotated[OnnxExporter, typer.Option(help="ONNX exporter.")] = OnnxExporter.dynamo,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch/--static-batch", help="ONNX batch axis dynamic, or fixed.")
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Batch a --static-batch ONNX file is fixed to.", min=1)] = 64,
    method: Annotated[JitMethod, typer.Option(help="TorchScript: torch.jit.script or trace.")] = JitMethod.script,
    input_shape: Annotated[
        str | None, typer.Option(help="Per-sample input shape like 1x5x5; default from the spec (3x32x32).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights.")] = 0,
    json_out: JsonOpt = False,
) -> int:
    """Export models to TorchScript and/or ONNX, with a manifest; exit 1 if any export failed."""
    from exporter.export import FORMATS, ExportOptions, export_models
    from exporter.torchscript_export import JIT_DEPRECATION_NOTE
    from exporter.zoo import resolve_models
    from poolkit.output import console, note, print_json
    from poolkit.render import export_table

    refs = resolve_models(model)
    options = ExportOptions(
        formats=FORMATS if format is Format.all else (format.value,),
        opset=opset,
        exporter=exporter.value,
        method=method.value,
        dynamic_batch=dynamic_batch,
        static_batch_size=batch_size,
        input_shape=parse_shape(input_shape),
        seed=seed,
    )

    def progress(record: Any) -> None:
        if not json_out:
            mark = "[green]✓[/green]" if record.ok else "[red]✗[/red]"
            console.print(f"{mark} {record.name} {record.format}", highlight=False)

    run = export_models(refs, out, options, on_record=progress)
    if json_out:
        print_json(run.records)
    else:
        console.print(export_table(run.records, str(out)))
    if any("torch.jit" in w and "deprecated" in w for w in run.warnings):
        import torch

        note(JIT_DEPRECATION_NOTE.format(version=torch.__version__.split("+")[0]))
    return EXIT_FAILED if run.failed else EXIT_OK


def export_missing(refs: list[Any], models: Path) -> None:
    """bench and show need artifacts: export the models the manifest lacks, and say so."""
    from exporter.export import ensure_exported
    from poolkit.output import note

    exported = ensure_exported(refs, models)
    if exported:
        note(f"exported {', '.join(exported)} into {models}/ first")


def devices_for(device: Device) -> tuple[str, ...]:
    return ("cpu", "cuda") if device is Device.all else (device.value,)


def parse_batches(text: str) -> int | None:
    if text.lower() == "all":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise PoolkitError(f"bad --batches '{text}': a positive number or 'all'")


DataOpt = Annotated[DataKind, typer.Option(help="Real CIFAR10 test images, or seeded random ones.")]
DataRootOpt = Annotated[
    Path | None,
    typer.Option(help="Folder holding cifar-10-batches-py/ (else $POOLKIT_DATA, else the 1,000 shipped images)."),
]
DownloadOpt = Annotated[bool, typer.Option(help="Ask torchvision to fetch the whole test set into --data-root.")]


def load_data(data: DataKind, data_root: Path | None, download: bool) -> Any:
    from poolkit.cifar10 import load_images

    if download and not data_root:
        raise PoolkitError("--download needs --data-root: the folder to download CIFAR10 into")
    return load_images(data.value, data_root, download)


@app.command()
@handles_errors
def verify(
    models: Annotated[Path, typer.Option(help="Folder with manifest.json and the artifacts.")] = Path("models"),
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Only these models (repeat).")] = None,
    data: DataOpt = DataKind.cifar10,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    batches: Annotated[str, typer.Option(help="How many batches, or 'all'.")] = "all",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch (the seeds use 64).")] = 64,
    atol: Annotated[float, typer.Option(min=0.0, help="Absolute tolerance (fp32 default 1e-5).")] = 1e-5,
    rtol: Annotated[float, typer.Option(min=0.0, help="Relative tolerance (fp32 default 1e-5).")] = 1e-5,
    device: Annotated[Device, typer.Option(help="Where the artifacts run; the reference is eager on the CPU.")] = (
        Device.cpu
    ),
    report: Annotated[Path | None, typer.Option(help="JSON report path (default results/verify.json).")] = None,
    results: Annotated[Path, typer.Option(help="Folder for reports and failing batches.")] = Path("results"),
    replay: Annotated[Path | None, typer.Option(help="Re-run a failing batch saved by an earlier verify.")] = None,
    json_out: JsonOpt = False,
) -> int:
    """Check every exported artifact against eager PyTorch on CIFAR10; exit 1 on any mismatch."""
    from poolkit.output import console, print_json, progress_bar

    if replay is not None:
        return _replay(replay, json_out)
    from poolkit.envinfo import environment
    from poolkit.files import write_json_atomic
    from poolkit.render import verify_table
    from poolkit.verify import VerifyOptions
    from poolkit.verify import verify as run_verify
    from runtimes.base import require_cuda

    options = VerifyOptions(atol, rtol, batch_size, parse_batches(batches), devices_for(device), results)
    if device is Device.cuda:
        require_cuda(["eager", "torchscript", "onnxruntime"])
    images = load_data(data, data_root, download)
    with progress_bar() as progress:
        task = progress.add_task("verify", total=None)
        verdict = run_verify(
            models,
            images,
            options,
            names=model,
            environment=environment(),
            on_batch=lambda label: progress.update(task, advance=1, description=label),
            on_rows=lambda total: progress.update(task, total=total),
        )
    path = write_json_atomic(report or results / "verify.json", verdict)
    if json_out:
        print_json(verdict)
    else:
        console.print(verify_table(verdict))
        console.print(f"[dim]report: {path}[/dim]")
    return EXIT_OK if verdict.passed else EXIT_FAILED


def _replay(path: Path, json_out: bool) -> int:
    from poolkit.output import console, print_json
    from poolkit.verify import replay

    meta, results = replay(path)
    if json_out:
        print_json({"replayed": meta, "outputs": results})
    else:
        for i, c in enumerate(results):
            verdict = "[green]passed[/green]" if c else "[bold red]FAILED[/bold red]"
            console.print(
                f"{meta['model']} {meta['format']} {meta['runtime']} {meta['device']} output {i}: {verdict} — "
                f"max abs {c.max_abs:.3g}, {c.mismatched:,} of {c.elements:,} elements out of tolerance, "
                f"worst at {tuple(c.worst_location)}"
            )
    return EXIT_OK if all(results) else EXIT_FAILED


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s <= 0 for s in sizes):
        raise PoolkitError(f"bad --batch-sizes '{text}': positive numbers separated by commas, like 1,16,64,256")
    return sizes


@app.command()
@handles_errors
def bench(
    device: Annotated[Device, typer.Option(help="cpu, cuda, or all (CUDA rows say 'unavailable' and why).")] = (
        Device.cpu
    ),
    model: ModelOpt = None,
    runtime: Annotated[
        list[str] | None,
        typer.Option(help="eager, torchscript, onnxruntime (default: these three); also compile, tensorrt."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    batch_sizes: Annotated[str | None, typer.Option(help="Several batch sizes, e.g. 1,16,64,256.")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Uncounted runs after the first.")] = 10,
    iters: Annotated[int | None, typer.Option(min=1, help="Counted runs (default 100).")] = None,
    min_time: Annotated[float | None, typer.Option(min=0.0, help="Instead: run at least this many seconds.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Threads for every runtime (default: usable cores).")
    ] = None,
    models: Annotated[Path, typer.Option(help="Folder with manifest.json; missing models are exported there.")] = Path(
        "models"
    ),
    out: Annotated[Path, typer.Option(help="Folder for bench.json, bench.csv, bench.png.")] = Path("results"),
    compare: Annotated[Path | None, typer.Option(help="An earlier bench.json to compare with.")] = None,
    self_check: Annotated[bool, typer.Option(help="Compare poolkit's eager p50 with torch.utils.benchmark.")] = False,
    json_out: JsonOpt = False,
) -> int:
    """Time eager, TorchScript and ONNX Runtime per model, runtime, device and batch size."""
    from exporter.zoo import resolve_models
    from poolkit.bench import BenchSettings, run_bench
    from poolkit.bench_report import compare_runs, load_report, write_reports
    from poolkit.cifar10 import load_cifar10
    from poolkit.envinfo import environment
    from poolkit.output import console, print_json, progress_bar
    from poolkit.render import bench_table, compare_table
    from runtimes.base import DEFAULT_RUNTIMES, check_runtime_names, require_cuda

    runtimes = tuple(runtime or DEFAULT_RUNTIMES)
    check_runtime_names(runtimes)
    settings = BenchSettings(
        devices=devices_for(device),
        runtimes=runtimes,
        batch_sizes=parse_sizes(batch_sizes) if batch_sizes else (batch_size,),
        warmup=warmup,
        iters=iters if iters is not None or min_time is not None else 100,
        min_time_s=min_time,
        threads=threads,
    )
    old = load_report(compare) if compare else None
    if device is Device.cuda:
        require_cuda(runtimes)
    refs = resolve_models(model)
    export_missing(refs, models)
    if self_check:
        from poolkit.bench import self_check as run_self_check

        check = run_self_check(models, refs[0].name, threads, settings.batch_sizes[0])
        if json_out:
            print_json(check)
        else:
            console.print(
                f"self-check on {check['model']} (batch {check['batch_size']}, {check['threads']} threads): "
                f"poolkit eager p50 {check['poolkit_p50_ms']:.3f} ms, torch.utils.benchmark median "
                f"{check['torch_benchmark_median_ms']:.3f} ms, ratio {check['ratio']:.3f} — "
                + ("[green]within 10%[/green]" if check["within_10_percent"] else "[red]NOT within 10%[/red]")
            )
        return EXIT_OK if check["within_10_percent"] else EXIT_FAILED
    images = load_cifar10()
    total = len(refs) * len(settings.batch_sizes) * len(settings.devices) * len(runtimes)
    with progress_bar() as progress:
        task = progress.add_task("bench", total=total)
        report = run_bench(
            models,
            [r.name for r in refs],
            settings,
            images.images,
            environment=environment(),
            data_label=images.source.note,
            on_step=lambda label: progress.update(task, advance=1, description=label),
        )
    paths = write_reports(report, out)
    changes = compare_runs(old, report.measurements) if old is not None else None
    if json_out:
        print_json({"report": report, "files": {k: str(v) for k, v in paths.items()}, "compare": changes})
    else:
        console.print(bench_table(report))
        if changes is not None:
            console.print(compare_table(changes, str(compare)))
        console.print(f"[dim]written: {', '.join(str(p) for p in paths.values())}[/dim]")
    return EXIT_FAILED if any(m.status == "failed" for m in report.measurements) else EXIT_OK


@app.command()
@handles_errors
def show(
    model: ModelOpt = None,
    batches: Annotated[str, typer.Option(help="Batches of 64 to log per model, or 'all'.")] = "2",
    logdir: Annotated[Path, typer.Option(help="TensorBoard log folder (one run per model and runtime).")] = Path(
        "logs"
    ),
    png: Annotated[Path, typer.Option(help="Folder for one PNG per model.")] = Path("results/show"),
    runtime: Annotated[ShowRuntime, typer.Option(help="Which runtime computes the outputs.")] = ShowRuntime.eager,
    channels: Annotated[
        Channels,
        typer.Option(help="Outputs with other than 1 or 3 channels: each channel gray, or the first 3 as RGB."),
    ] = Channels.gray,
    data: DataOpt = DataKind.cifar10,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    models: Annotated[Path, typer.Option(help="Folder with manifest.json; missing models are exported there.")] = Path(
        "models"
    ),
    json_out: JsonOpt = False,
) -> int:
    """Log input and output images of each model to TensorBoard and draw them as PNG pictures."""
    from exporter.manifest import load_manifest
    from exporter.zoo import resolve_models
    from poolkit.output import console, print_json
    from poolkit.show import show_model
    from runtimes.base import Artifact, open_runtime

    refs = resolve_models(model)
    limit = parse_batches(batches)
    images = load_data(data, data_root, download)
    export_missing(refs, models)
    records = {r.key: r for r in load_manifest(models) if r.ok}
    runtime_name = "onnxruntime" if runtime is ShowRuntime.onnx else runtime.value
    fmt = "torchscript" if runtime is ShowRuntime.torchscript else "onnx"
    results = []
    for ref in refs:
        record = records.get((ref.name, fmt)) or records.get((ref.name, "torchscript"))
        if record is None:
            raise PoolkitError(f"'{ref.name}' has no {fmt} artifact in {models}/ (its export failed)", exit_code=1)
        if record.sample_shape != tuple(images.images.shape[1:]):
            raise PoolkitError(
                f"'{ref.name}' takes {'x'.join(map(str, record.sample_shape))} inputs, not CIFAR10 images "
                "(use --data synthetic)"
            )
        rt = open_runtime(runtime_name, Artifact(record, models), "cpu")
        try:
            results.append(show_model(ref.name, ref.spec_text, rt, images, logdir, png, limit, channels=channels.value))
        finally:
            rt.close()
    if json_out:
        print_json({"data": images.source, "results": results})
    else:
        for r in results:
            console.print(
                f"[bold]{r.model}[/bold] \\[{r.runtime}] output {'x'.join(map(str, r.output_shape))}: {r.display}"
            )
            console.print(f"    picture: {r.png}")
        console.print(f"TensorBoard: tensorboard --logdir {logdir}")
    return EXIT_OK


def split_list(text: str | None, known: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if t not in known]
    if bad or not items:
        raise PoolkitError(f"bad {option} '{text}': choose from {', '.join(known)}")
    return items


@app.command()
@handles_errors
def sweep(
    layer: Annotated[
        str, typer.Option(help="conv, maxpool, avgpool, adaptive, activation, or all (comma-separated).")
    ] = "all",
    exporters: Annotated[
        str | None,
        typer.Option(help="Export paths: torchscript-script, torchscript-trace, onnx-dynamo, onnx-legacy."),
    ] = None,
    opsets: Annotated[str, typer.Option(help="ONNX opsets, comma-separated.")] = "17,20",
    runtimes: Annotated[
        str | None,
        typer.Option(help="ONNX runtimes: onnxruntime-cpu, onnxruntime-cuda (default: cpu, + cuda if it works)."),
    ] = None,
    input_size: Annotated[list[str] | None, typer.Option(help="HxW, repeatable (default 32x32 and 31x31).")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all cores).")] = None,
    timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds a cell may take before it is recorded as timeout.")
    ] = 120.0,
    out: Annotated[Path, typer.Option(help="Path stem: writes STEM.json, STEM.md and the STEM.jsonl journal.")] = Path(
        "results/conformance"
    ),
    fresh: Annotated[bool, typer.Option(help="Ignore the journal and run every cell again.")] = False,
    json_out: JsonOpt = False,
) -> int:
    """Export, run and compare every conv/pool/activation configuration: a conformance matrix."""
    from poolkit.bench import usable_cores
    from poolkit.envinfo import environment
    from poolkit.output import console, note, print_json, progress_bar
    from poolkit.render import sweep_table
    from poolkit.sweep import Journal, run_sweep
    from poolkit.sweep_grid import EXPORT_PATHS, LAYER_GROUPS, build_grid
    from poolkit.sweep_report import summary, write_json, write_markdown

    groups = LAYER_GROUPS if layer == "all" else split_list(layer, LAYER_GROUPS, "--layer")
    exports = split_list(exporters, EXPORT_PATHS, "--exporters") or EXPORT_PATHS
    try:
        opset_list = tuple(int(o) for o in opsets.split(","))
    except ValueError:
        raise PoolkitError(f"bad --opsets '{opsets}': numbers like 17,20") from None
    sizes = tuple(parse_shape(s, "--input-size", "32x32") for s in (input_size or ["32x32", "31x31"]))
    if any(s is None or len(s) != 2 for s in sizes):
        raise PoolkitError("bad --input-size: give HxW, like 32x32")
    from runtimes.base import cuda_problem, require_cuda

    onnx_runtimes = split_list(runtimes, ("onnxruntime-cpu", "onnxruntime-cuda"), "--runtimes")
    if onnx_runtimes is None:  # CUDA cells only where the CUDA provider really works
        onnx_runtimes = ("onnxruntime-cpu",) + (() if cuda_problem(["onnxruntime"]) else ("onnxruntime-cuda",))
    elif "onnxruntime-cuda" in onnx_runtimes:
        require_cuda(["onnxruntime"], "--runtimes onnxruntime-cuda")
    cells = build_grid(groups, exports, opset_list, sizes, onnx_runtimes)  # type: ignore[arg-type]
    journal = Journal(Path(f"{out}.jsonl"))
    if fresh and journal.path.exists():
        journal.path.unlink()
    env = environment()
    versions = {k: env[k] for k in ("torch", "onnx", "onnxruntime")}
    done = journal.read()
    stale = [r for r in done.values() if r.versions and r.versions != versions]
    if stale:
        raise PoolkitError(
            f"{journal.path} was written with {stale[0].versions}, this is {versions}: add --fresh to start over"
        )
    with progress_bar() as progress:
        task = progress.add_task("sweep", total=len(cells))
        progress.update(task, completed=sum(c.id in done for c in cells))
        results, resumed = run_sweep(
            cells,
            journal,
            jobs or usable_cores(),
            timeout,
            on_result=lambda r: progress.update(task, advance=1, description=f"{r.cell.group} {r.outcome}"),
            versions=versions,
        )
    if resumed:
        note(f"resumed: {resumed:,} of {len(cells):,} cells came from {journal.path}")
    settings = {
        "groups": list(groups),
        "exports": list(exports),
        "opsets": list(opset_list),
        "input_sizes": [list(s) for s in sizes],
        "onnx_runtimes": list(onnx_runtimes),
        "timeout_s": timeout,
    }
    json_path = write_json(results, Path(f"{out}.json"), env, settings)
    md_path = write_markdown(results, Path(f"{out}.md"), env)
    if json_out:
        print_json({"summary": summary(results), "json": str(json_path), "markdown": str(md_path)})
    else:
        console.print(sweep_table(results))
        console.print(f"[dim]written: {json_path}, {md_path}[/dim]")
    return EXIT_OK
