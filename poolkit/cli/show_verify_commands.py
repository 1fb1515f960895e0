"""`poolkit verify` and `poolkit show`: do the artifacts compute what eager does, and what does it look like.

Each command imports its logic (and `cli.output`) inside its body, on purpose: those packages load
torch, onnx and rich, and `poolkit --help` must stay instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolkit.cli.app import app, handles_errors
from poolkit.cli.options import (
    Channels,
    DataKind,
    DataOpt,
    DataRootOpt,
    Device,
    DownloadOpt,
    JsonOpt,
    ModelOpt,
    ModelsDirOpt,
    RuntimeOpt,
    devices_for,
    finite,
    parse_batches,
    parse_runtimes,
    writable_file,
)
from poolkit.cli.run_scope import current_run, results_folder
from poolkit.common.errors import EXIT_FAILED, EXIT_OK
from poolkit.common.files import write_json_atomic
from poolkit.common.limits import MAX_BATCH

CPU = Device.cpu  # type: ignore[attr-defined]


@app.command()
@handles_errors
def verify(
    models: ModelsDirOpt = Path("models"),
    model: ModelOpt = None,
    runtime: RuntimeOpt = None,
    data: DataOpt = DataKind.cifar10,  # type: ignore[attr-defined]
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    batches: Annotated[str, typer.Option(help="How many batches, or 'all'.")] = "all",
    batch_size: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH, help="Images per batch (the tutorials use 64).")
    ] = 64,
    atol: Annotated[float, typer.Option(min=0.0, help="Absolute tolerance (fp32 default 1e-5).")] = 1e-5,
    rtol: Annotated[float, typer.Option(min=0.0, help="Relative tolerance (fp32 default 1e-5).")] = 1e-5,
    device: Annotated[Device, typer.Option(help="Where the artifacts run; the reference is eager on the CPU.")] = CPU,
    report: Annotated[Path | None, typer.Option(help="JSON report path (default: verify.json in --results).")] = None,
    results: Annotated[
        Path | None, typer.Option(help="Folder for reports and failing batches (default: a new run in results/runs/).")
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Re-run a failing batch saved by an earlier verify, on the artifact in --models."),
    ] = None,
    inputs: Annotated[
        str, typer.Option(help="Input sets: raw, normalized, edge, odd, tutorial (comma-separated), or all.")
    ] = "all",
    sensitivity: Annotated[
        str,
        typer.Option(help="Would the data catch wrong variants? off, quick (sampled, a quarter of the time) or full."),
    ] = "quick",
    no_sensitivity: Annotated[bool, typer.Option("--no-sensitivity", help="The same as --sensitivity off.")] = False,
    examples: Annotated[
        bool,
        typer.Option("--examples", help="Run the tutorials' worked examples, exact numbers, through every artifact."),
    ] = False,
    json_out: JsonOpt = False,
) -> int:
    """Check every exported artifact against eager PyTorch on CIFAR10; exit 1 on any mismatch.

    Default: every artifact each model has, on the runtime that reads it (torchscript; onnxruntime for
    ONNX; export for .pt2; aoti); with --device cuda, eager on the GPU is checked against eager on the
    CPU too. TorchScript files are code: only files whose sha256 matches the manifest poolkit wrote are loaded. Inputs: raw and normalised CIFAR10,
    a seeded edge batch, and for artifacts that take any size an odd size and the seeds' examples.
    """
    from poolkit.cli.output import print_replay, print_verify, progress_callbacks
    from poolkit.verify.failure import replay_batch
    from poolkit.verify.inputs import parse_input_sets
    from poolkit.verify.report import DEFAULT_VERIFY_RUNTIMES, VerifyOptions
    from poolkit.verify.run import run_verify

    if replay is not None:
        meta, outputs = replay_batch(replay, models, model, finite(atol, "--atol"), finite(rtol, "--rtol"))
        print_replay(meta, outputs, json_out)
        return EXIT_OK if all(outputs) else EXIT_FAILED
    writable_file(report, "--report")
    runtimes = parse_runtimes(runtime, DEFAULT_VERIFY_RUNTIMES)
    if examples:
        folder = results_folder("verify-examples", results, "--results")
        return _verify_examples(models, model, runtimes, devices_for(device), folder, json_out)
    options = VerifyOptions(
        finite(atol, "--atol"), finite(rtol, "--rtol"), batch_size, parse_batches(batches), devices_for(device),
        Path(), runtimes, parse_input_sets(inputs), "off" if no_sensitivity else sensitivity,
    )  # fmt: skip
    options.results_dir = results_folder("verify", results, "--results")  # a new run, once the options are good
    with progress_callbacks("verify") as (on_rows, on_batch):
        verdict, path = run_verify(models, model, options, data.value, data_root, download, report, on_batch, on_rows)
    print_verify(verdict, path, json_out)
    return EXIT_OK if verdict.passed else EXIT_FAILED


def _verify_examples(
    models: Path,
    names: list[str] | None,
    runtimes: tuple[str, ...],
    devices: tuple[str, ...],
    results: Path,
    json_out: bool,
) -> int:
    """`verify --examples`: the tutorials' worked examples; results/verify_examples.json beside the table."""
    from poolkit.cli.output import print_examples
    from poolkit.verify.examples import run_examples

    found = run_examples(models, names, runtimes, devices)
    print_examples(found, write_json_atomic(Path(results) / "verify_examples.json", found), json_out)
    return EXIT_OK if found.passed else EXIT_FAILED


@app.command()
@handles_errors
def show(
    model: ModelOpt = None,
    runtime: RuntimeOpt = None,
    device: Annotated[Device, typer.Option(help="Where the outputs are computed.")] = CPU,
    batches: Annotated[str, typer.Option(help="Batches of 64 to log per model, or 'all'.")] = "2",
    logdir: Annotated[
        Path | None,
        typer.Option(help="TensorBoard log folder, one run per model and runtime (default: the run's tensorboard/)."),
    ] = None,
    png: Annotated[
        Path | None, typer.Option(help="Folder for one PNG per model (default: a new run in results/runs/, show/).")
    ] = None,
    channels: Annotated[
        Channels,
        typer.Option(help="Outputs with other than 1 or 3 channels: each channel gray, or the first 3 as RGB."),
    ] = Channels.gray,
    data: DataOpt = DataKind.cifar10,  # type: ignore[attr-defined]
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    models: Annotated[Path, typer.Option(help="Folder with manifest.json; missing models are exported there.")] = Path(
        "models"
    ),
    json_out: JsonOpt = False,
) -> int:
    """Log input and output images of each model to TensorBoard and draw them as PNG pictures (default runtime: eager)."""
    from poolkit.cli.output import print_show, progress_callbacks
    from poolkit.show.run import ShowOptions, show_models

    options = ShowOptions(parse_runtimes(runtime, ("eager",)), devices_for(device), parse_batches(batches))
    options.channels = channels.value
    options.png_dir = results_folder("show", png, "--png", "show")  # what is not named goes into a new run
    options.logdir = results_folder("show", logdir, "--logdir", "tensorboard")
    with progress_callbacks("show") as (on_total, on_model):
        shown = show_models(models, model, options, data.value, data_root, download, on_total, on_model)
    run = current_run()
    if run is not None:  # what the report captions the pictures with
        write_json_atomic(run.folder / "show.json", {"data": shown.images.source, "results": shown.results})
    print_show(shown, options.logdir, json_out)
    return EXIT_OK
