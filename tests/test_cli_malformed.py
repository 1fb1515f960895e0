"""Every command against malformed and hostile inputs: the exit code, one `error:` line, no traceback.

Also the trust boundaries: paths leaving the models folder, crafted pickles, hashes, terminal text.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.errors import PoolkitError
from poolkit.common.files import sha256_file
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts
from poolkit.services.cifar10 import SHIPPED_ROOT, DataError, read_python_batch

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """relu exported in both formats: a models folder that verifies."""
    out = tmp_path_factory.mktemp("good_models")
    assert not export_models(resolve_models(["relu"]), out, ExportOptions()).failed
    return out


def manifest_dir(root: Path, name: str, content: object) -> Path:
    folder = root / name
    folder.mkdir()
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / "manifest.json").write_text(text)
    return folder


def overwrite_rehashed(folder: Path, data: bytes, *names: str) -> None:
    """Overwrite files of the folder with `data` and record their new sha256 in the manifest: hash-valid
    files that torch or ONNX Runtime cannot load."""
    for name in names:
        (folder / name).write_bytes(data)
    records = load_manifest(folder)
    for r in records:
        if r.path in names:
            r.sha256 = sha256_file(folder / r.path)
        if r.weights in names:
            r.weights_sha256 = sha256_file(folder / r.weights)
    save_manifest(folder, records)


def edited_copy(good: Path, root: Path, name: str, formats: tuple[str, ...] = ("onnx",), **changes: object) -> Path:
    """A copy of the good folder whose records of `formats` have `changes` (one malformed record among
    good ones is that artifact's failed row, not an error: test_hostile_files.py)."""
    folder = root / name
    shutil.copytree(good, folder)
    records = load_manifest(folder)
    for r in [r for r in records if r.format in formats]:
        for key, value in changes.items():
            setattr(r, key, value)
    save_manifest(folder, records)
    return folder


def linked_copy(good: Path, root: Path, name: str) -> Path:
    """A copy of the good folder whose artifact files are symlinks to files outside it."""
    folder = root / name
    shutil.copytree(good, folder)
    for file in ("relu.onnx", "relu.torchscript.pt", "relu.pt2"):
        outside = root / f"outside-{file}"
        shutil.copy(folder / file, outside)
        (folder / file).unlink()
        (folder / file).symlink_to(outside)
    return folder


class Evil:
    """A pickle that would run a shell command when loaded by plain pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def cifar_dir(root: Path, name: str, batch: object | bytes, meta: object | bytes | None = None) -> Path:
    folder = root / name / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(batch if isinstance(batch, bytes) else pickle.dumps(batch))
    if meta is not None:
        (folder / "batches.meta").write_bytes(meta if isinstance(meta, bytes) else pickle.dumps(meta))
    return folder.parent


def npz(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path


def cases(tmp: Path, good: Path) -> list[tuple[str, list[str], int]]:
    afile = tmp / "afile"
    afile.write_text("not a folder")
    shipped_batch = (SHIPPED_ROOT / "cifar-10-batches-py" / "test_batch").read_bytes()
    marker = tmp / "pwned"
    x = np.zeros((1, 3, 32, 32), np.float32)
    other_meta = json.dumps({"models_dir": str(tmp / "elsewhere"), "model": "relu", "format": "onnx",
                             "runtime": "onnxruntime", "device": "cpu", "first_image": 0, "atol": 1e-5, "rtol": 1e-5})  # fmt: skip
    own_meta = json.loads(other_meta) | {"models_dir": str(good)}
    models = ["--models", str(good)]
    return [
        # usage errors from Click: one line, exit 2
        ("unknown command", ["nope"], 2),
        ("unknown option", ["export", "--bogus"], 2),
        ("bad choice", ["export", "--format", "tflite"], 2),
        ("missing value", ["export", "-m"], 2),
        ("not a number", ["verify", "--batch-size", "many"], 2),
        # sizes refused before allocating
        ("huge input shape", ["export", "-m", "relu", "--input-shape", "1x100000x100000", "--out", str(tmp / "o")], 2),
        ("zero input shape", ["export", "-m", "relu", "--input-shape", "0x3", "--out", str(tmp / "o")], 2),
        ("huge seed", ["export", "-m", "relu", "--seed", str(10**30), "--out", str(tmp / "o")], 2),
        ("huge batch", ["bench", "-m", "relu", "--batch-sizes", "1000000", *models], 2),
        ("huge batch size", ["verify", "--batch-size", "1000000", *models], 2),
        ("huge model", ["zoo", "-m", "linear(100000,100000)"], 2),
        ("opset unknown to onnx", ["export", "-m", "relu", "-f", "onnx", "--opset", "999", "--out", str(tmp / "o")], 2),
        # specs
        ("non-finite number", ["zoo", "-m", "leaky_relu(slope=1e999)"], 2),
        ("deeply nested", ["zoo", "-m", "conv(3,6,k=" + "-" * 3000 + "1)"], 2),
        ("overlong spec", ["zoo", "-m", "relu|" * 1000 + "relu"], 2),
        ("markup in a spec", ["zoo", "-m", "x[/foo]"], 2),
        # output paths
        ("--out is a file", ["export", "-m", "relu", "-f", "torchscript", "--out", str(afile)], 2),
        ("--out under a file", ["export", "-m", "relu", "-f", "torchscript", "--out", str(afile / "sub")], 2),
        ("--results is a file", ["verify", *models, "--batches", "1", "--results", str(afile)], 2),
        ("--report is a folder", ["verify", *models, "--report", str(tmp)], 2),
        ("--png under a file", ["show", *models, "-m", "relu", "--png", str(afile / "png")], 2),
        ("bench --out is a file", ["bench", *models, "-m", "relu", "--out", str(afile)], 2),
        # manifests
        ("no manifest", ["verify", "--models", str(tmp / "none")], 2),
        ("manifest not JSON", ["verify", "--models", str(manifest_dir(tmp, "m1", "{not json"))], 2),
        ("manifest without list", ["verify", "--models", str(manifest_dir(tmp, "m2", {"artifacts": 5}))], 2),
        ("manifest entry not an object", ["verify", "--models", str(manifest_dir(tmp, "m3", {"artifacts": [5]}))], 2),
        (
            "manifest entry bad shape",
            [
                "verify",
                "--models",
                str(
                    manifest_dir(
                        tmp,
                        "m4",
                        {
                            "artifacts": [
                                {
                                    "name": "relu",
                                    "spec": "relu",
                                    "format": "onnx",
                                    "method": "dynamo",
                                    "status": "ok",
                                    "input_shape": "abc",
                                }
                            ]
                        },
                    )
                ),
            ],
            2,
        ),  # fmt: skip
        (
            "escape sequence in a name",
            [
                "verify",
                "--models",
                str(
                    manifest_dir(
                        tmp,
                        "m11",
                        {
                            "artifacts": [
                                {
                                    "name": "\x1b]0;pwned\x07",
                                    "spec": "relu",
                                    "format": "onnx",
                                    "method": "dynamo",
                                    "status": "ok",
                                    "input_shape": ["batch", 3, 32, 32],
                                }
                            ]
                        },
                    )
                ),
            ],
            2,
        ),  # fmt: skip
        ("empty manifest", ["verify", "--models", str(manifest_dir(tmp, "m5", {"artifacts": []}))], 2),
        (
            "path with ..",
            [
                "verify",
                "--models",
                str(edited_copy(good, tmp, "m6", formats=("onnx", "torchscript", "pt2"), path="../../etc/passwd")),
            ],
            2,
        ),
        (
            "absolute path",
            [
                "show",
                "--models",
                str(edited_copy(good, tmp, "m7", formats=("onnx", "torchscript", "pt2"), path="/etc/passwd")),
                "-m",
                "relu",
            ],
            2,
        ),
        (
            "weights outside",
            [
                "bench",
                "--models",
                str(edited_copy(good, tmp, "m8", formats=("onnx", "torchscript", "pt2"), weights="../w.pt")),
                "-m",
                "relu",
            ],
            2,
        ),
        ("link leaving the folder", ["verify", "--models", str(linked_copy(good, tmp, "m10"))], 2),
        # replay files
        ("replay not npz", ["verify", "--replay", str(afile), *models], 2),
        ("replay without meta", ["verify", "--replay", str(npz(tmp / "a.npz", input=x)), *models], 2),
        (
            "replay of another folder",
            ["verify", "--replay", str(npz(tmp / "b.npz", meta=np.array(other_meta), input=x, expected_0=x)), *models],
            2,
        ),  # fmt: skip
        (
            "replay without outputs",
            ["verify", "--replay", str(npz(tmp / "c.npz", meta=np.array(json.dumps(own_meta)), input=x)), *models],
            2,
        ),  # fmt: skip
        (
            "replay bad runtime",
            [
                "verify",
                "--replay",
                str(
                    npz(tmp / "d.npz", meta=np.array(json.dumps(own_meta | {"runtime": "evil"})), input=x, expected_0=x)
                ),
                *models,
            ],
            2,
        ),  # fmt: skip
        # bench --compare
        ("compare not JSON", ["bench", "-m", "relu", *models, "--baseline", str(afile)], 2),
        (
            "compare bad samples",
            [
                "bench",
                "-m",
                "relu",
                *models,
                "--baseline",
                str(
                    _write(
                        tmp / "cmp.json",
                        {
                            "measurements": [
                                {
                                    "model": "relu",
                                    "runtime": "eager",
                                    "device": "cpu",
                                    "batch_size": 64,
                                    "samples_ms": ["slow"],
                                }
                            ]
                        },
                    )
                ),
            ],
            2,
        ),  # fmt: skip
        # data
        ("crafted test_batch", ["verify", *models, "--data-root", str(cifar_dir(tmp, "d1", Evil(marker)))], 2),
        (
            "crafted batches.meta",
            ["verify", *models, "--data-root", str(cifar_dir(tmp, "d2", shipped_batch, Evil(marker)))],
            2,
        ),  # fmt: skip
        (
            "batches.meta without names",
            ["verify", *models, "--data-root", str(cifar_dir(tmp, "d3", shipped_batch, {"label_names": 5}))],
            2,
        ),  # fmt: skip
        (
            "zero images",
            [
                "verify",
                *models,
                "--data-root",
                str(cifar_dir(tmp, "d4", {"data": np.zeros((0, 3072), np.uint8), "labels": []})),
            ],
            2,
        ),  # fmt: skip
        (
            "test_batch not a pickle",
            ["show", "-m", "relu", *models, "--data-root", str(cifar_dir(tmp, "d5", b"junk"))],
            2,
        ),
        (
            "show a non-image model",
            [
                "show",
                "-m",
                "linear(10,3)",
                "--models",
                str(tmp / "m9"),
                "--data",
                "synthetic",
                "--png",
                str(tmp / "png"),
                "--logdir",
                str(tmp / "logs"),
            ],
            2,
        ),  # fmt: skip
        # other commands' options
        ("too many threads", ["bench", *models, "--threads", "100000"], 2),
        ("absurd time budget", ["bench", *models, "--min-time", "1e308"], 2),
        ("absurd iterations", ["bench", *models, "--iters", str(10**10)], 2),
        ("too many workers", ["sweep", "--jobs", "100000"], 2),
        ("bad runtime", ["verify", *models, "--runtime", "nope"], 2),
        ("bad batches", ["verify", *models, "--batches", "0"], 2),
        ("bad sweep opset", ["sweep", "--opsets", "abc"], 2),
        *later_options(tmp, good),
    ]


def later_options(tmp: Path, good: Path) -> list[tuple[str, list[str], int]]:
    """Options added after the first hostile pass: verify's input sets and examples, export's user
    models and shapes, bench's adaptive and ORT settings and --compare files, sweep's scheduler."""
    from poolkit.runtimes.registry import cuda_problem

    models = ["--models", str(good)]
    exits = tmp / "exits.py"
    exits.write_text("import sys\n\nsys.exit(0)\n")  # would end poolkit with exit 0 and no export
    bench = ["bench", *models, "-m", "relu", "--out", str(tmp / "bench"), "--runtime", "eager"]
    sample = {"model": "relu", "runtime": "eager", "device": "cpu", "batch_size": 64, "samples_ms": [1.0, 1.2]}

    def compare(name: str, schema: object = 3, **row: object) -> list[str]:
        return [
            *bench,
            "--baseline",
            str(_write(tmp / f"{name}.json", {"schema": schema, "measurements": [sample | row]})),
        ]

    sweep = ["sweep", "--layer", "activation", "--exporters", "onnx-legacy", "--input-size", "8x8"]
    sweep += ["--no-bundles", "--out", str(tmp / "sweep" / "conformance")]
    rows = [
        ("verify empty --inputs", ["verify", *models, "--inputs", ""], 2),
        ("verify infinite --atol", ["verify", *models, "--atol", "inf"], 2),
        ("verify infinite --rtol", ["verify", *models, "--rtol", "1e999"], 2),
        (
            "full-width digits in a shape",
            ["export", "-m", "relu", "--input-shape", "\uff13x32x32", "--out", str(tmp / "o")],
            2,
        ),
        ("underscore in a shape", ["zoo", "-m", "relu", "--input-shape", "3x3_2x32"], 2),
        ("empty second input", ["zoo", "-m", "relu", "--input-shape", "3x32x32+"], 2),
        ("sys.exit in a model file", ["export", "-m", f"{exits}:Net", "--out", str(tmp / "o")], 2),
        ("full-width batch size", [*bench, "--batch-sizes", "\uff11"], 2),
        ("--max-time below --min-time", [*bench, "--min-time", "2", "--max-time", "1"], 2),
        ("--ci-target without --min-time", [*bench, "--ci-target", "0.5"], 2),
        ("--max-time without --min-time", [*bench, "--max-time", "5"], 2),
        ("--ort-spinning without onnxruntime", [*bench, "--ort-spinning", "on"], 2),
        ("compare negative samples", compare("neg", samples_ms=[-1.0, -2.0]), 2),
        ("compare NaN samples", compare("nan", samples_ms=[1.0, float("nan")]), 2),
        ("compare huge samples", compare("huge", samples_ms=[1e308]), 2),
        ("compare boolean samples", compare("bool", samples_ms=[True]), 2),
        ("compare missing samples", compare("missing", samples_ms=[]), 2),
        ("compare batch size as text", compare("bstext", batch_size="64"), 2),
        ("compare without a model", compare("nomodel", model=None), 2),
        ("compare schema 1", compare("schema1", schema=1), 2),
        ("compare schema from the future", compare("schema9", schema=9), 2),
        ("empty --scheduler", [*sweep, "--scheduler", ""], 2),
        ("--scheduler not an address", [*sweep, "--scheduler", "not a url"], 2),
        ("--scheduler port out of range", [*sweep, "--scheduler", "tcp://127.0.0.1:99999"], 2),
        ("--scheduler http", [*sweep, "--scheduler", "http://127.0.0.1:8786"], 2),
        ("--scheduler markup", [*sweep, "--scheduler", "x[/foo]"], 2),
        ("--scheduler closed local port", [*sweep, "--opsets", "17", "--scheduler", "tcp://127.0.0.1:9"], 2),
        ("empty --opsets", [*sweep, "--opsets", ""], 2),
        ("empty --input-size", ["sweep", "--input-size", ""], 2),
        ("sweep opset out of range", [*sweep, "--opsets", "999"], 2),
        ("bad --layer in a list", ["sweep", "--layer", "pool1d,x[/foo]"], 2),
        ("infinite sweep --timeout", ["sweep", "--timeout", "inf"], 2),
        ("absurd sweep --timeout", ["sweep", "--timeout", "1e308"], 2),
    ]
    if cuda_problem(["onnxruntime"]):  # only CUDA asked for where there is none: refused, not 'unavailable'
        rows.append(("examples on missing CUDA", ["verify", *models, "--examples", "--device", "cuda"], 2))
    return rows


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_every_command_gives_one_line_for_malformed_inputs(good: Path, tmp_path: Path) -> None:
    failures = []
    for label, args, code in cases(tmp_path, good):
        result = runner.invoke(app, args)
        lines = result.stderr.strip().splitlines()
        ok = (
            result.exit_code == code
            and len(lines) == 1
            and lines[0].startswith("error: ")
            and "Traceback" not in result.output
            and (result.exception is None or isinstance(result.exception, SystemExit))
        )
        if not ok:
            failures.append(f"{label}: exit {result.exit_code}, stderr {result.stderr[-300:]!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "pwned").exists()  # no pickle ran code


def test_user_text_is_printed_literally(tmp_path: Path) -> None:
    result = runner.invoke(app, ["zoo", "-m", "x[/foo] data[old]"])
    assert result.exit_code == 2 and "'x[/foo] data[old]'" in result.stderr
    result = runner.invoke(app, ["zoo", "-m", "\x1b[31mrelu\x07"])
    assert result.exit_code == 2 and "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\\x1b[31mrelu\\x07" in result.stderr


def test_a_crafted_pickle_is_a_data_error_not_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": Evil(marker), "labels": []}))
    with pytest.raises(DataError, match=r"refused posix\.system: not part of the CIFAR10 format"):
        read_python_batch(path)
    assert not marker.exists()
    buffer = io.BytesIO()
    pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, buffer, protocol=2)  # _codecs too
    path.write_bytes(buffer.getvalue())
    data, labels = read_python_batch(path)
    assert data.shape == (2, 3072) and labels.tolist() == [1, 2]


def test_hashes_are_checked_before_loading(good: Path, tmp_path: Path) -> None:
    folder = edited_copy(good, tmp_path, "nullhash", sha256=None)
    (model,) = open_artifacts(folder, ["relu"])
    assert (
        model.problem("onnxruntime") == f"the manifest has no sha256 for {folder / 'relu.onnx'}: it cannot be trusted"
    )
    assert model.problem("torchscript") is None
    # a file changed after export fails its check; verify reports it as a failed row (exit 1)
    (folder / "relu.torchscript.pt").write_bytes(b"import os")
    (model,) = open_artifacts(folder, ["relu"])
    assert (model.problem("torchscript") or "").startswith(f"sha256 mismatch for {folder / 'relu.torchscript.pt'}")
    result = runner.invoke(app, ["verify", "--models", str(folder), "--batches", "1", "--results", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    # a file whose hash matches but that ONNX Runtime cannot load: one-line ArtifactProblem
    folder = edited_copy(good, tmp_path, "garbage")
    overwrite_rehashed(folder, b"not an onnx model", "relu.onnx")
    (model,) = open_artifacts(folder, ["relu"])
    with pytest.raises(PoolkitError, match=r"^onnxruntime cannot load .*relu\.onnx: ") as info:
        model.open("onnxruntime", "cpu")
    assert "\n" not in str(info.value)


def test_a_bug_is_one_line_with_how_to_see_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from poolkit.zoo import info as zoo_info

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(zoo_info, "describe", broken)
    result = runner.invoke(app, ["zoo", "-m", "relu"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: unexpected ZeroDivisionError: division by zero "
        "(a poolkit bug: please report it; POOLKIT_DEBUG=1 shows the traceback)"
    )


def test_library_warnings_do_not_reach_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import sys
    import warnings

    from poolkit.zoo import info as zoo_info

    real = zoo_info.describe

    def noisy(*args: object, **kwargs: object) -> object:
        warnings.warn("torch says something", UserWarning, stacklevel=1)
        warnings.warn("overflow encountered in exp", RuntimeWarning, stacklevel=1)
        logger = logging.getLogger("poolkit_test_torch")  # like torch: its own handler on stderr
        logger.addHandler(handler := logging.StreamHandler(sys.stderr))
        logger.warning("W1124 No CUDA runtime is found")  # what torch.compile logs on a machine without CUDA
        logger.removeHandler(handler)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zoo_info, "describe", noisy)
    result = runner.invoke(app, ["zoo", "-m", "relu"])
    assert result.exit_code == 0 and result.stderr == ""


def test_an_os_error_names_the_path() -> None:
    from poolkit.cli.app import one_line_error

    assert one_line_error(PermissionError(13, "Permission denied", "/ro/out")) == (
        "cannot use /ro/out: Permission denied",
        2,
    )
    assert one_line_error(RecursionError())[1] == 2


def test_bare_poolkit_shows_the_help_not_an_error() -> None:
    result = runner.invoke(app, [])
    assert "Usage: poolkit" in result.stdout and "error:" not in result.stderr


def test_the_show_hint_for_other_inputs_works(tmp_path: Path) -> None:
    """'use --data synthetic' must not fail the same way: synthetic images take the model's shape.
    (Two channels cannot be fitted to CIFAR10 and get the hint; a 1-channel model runs on synthetic data.)"""
    hint = ["show", "-m", "conv(2,3,k=3)", "--models", str(tmp_path / "m2"), "--png", str(tmp_path / "png")]
    result = runner.invoke(app, [*hint, "--logdir", str(tmp_path / "logs"), "--batches", "1"])
    assert result.exit_code == 2 and "use --data synthetic" in result.stderr
    args = ["show", "-m", "conv(1,3,k=3)", "--models", str(tmp_path / "m"), "--png", str(tmp_path / "png")]
    args += ["--logdir", str(tmp_path / "logs"), "--batches", "1"]
    result = runner.invoke(app, [*args, "--data", "synthetic"])
    assert result.exit_code == 0, result.stderr
    assert "output 64x3x30x30" in result.stdout


def test_hash_matching_files_torch_cannot_load_are_one_line(good: Path, tmp_path: Path) -> None:
    folder = tmp_path / "garbage"
    shutil.copytree(good, folder)
    overwrite_rehashed(folder, b"PK\x03\x04 not a zip", "relu.torchscript.pt", "relu.weights.pt")
    (model,) = open_artifacts(folder, ["relu"])
    with pytest.raises(PoolkitError, match=r"^cannot load the weights .*relu\.weights\.pt: "):
        model.eager_module()
    result = runner.invoke(app, ["verify", "--models", str(folder), "--batches", "1", "--results", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot load the weights" in result.stderr
    folder = tmp_path / "garbage_ts"
    shutil.copytree(good, folder)
    overwrite_rehashed(folder, b"PK\x03\x04 not a zip", "relu.torchscript.pt")
    (model,) = open_artifacts(folder, ["relu"])
    with pytest.raises(PoolkitError, match=r"^torchscript cannot load .*relu\.torchscript\.pt: ") as info:
        model.open("torchscript", "cpu")
    assert "\n" not in str(info.value)


def test_an_overlong_value_is_named_not_echoed_whole() -> None:
    result = runner.invoke(app, ["verify", "--inputs", "raw" * 100_000])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert len(result.stderr) < 2_100 and "characters in all)" in result.stderr


def test_bidi_controls_are_shown_escaped() -> None:
    result = runner.invoke(app, ["zoo", "-m", "relu\u202eabc"])
    assert result.exit_code == 2 and "\u202e" not in result.stderr and "\\u202e" in result.stderr


def test_a_tampered_journal_record_is_run_again(tmp_path: Path) -> None:
    """Wrong types in a journal line (a stray edit) are skipped, never reported as a measurement."""
    from poolkit.sweep.grid import Cell
    from poolkit.sweep.journal import Journal
    from poolkit.sweep.result import CellResult

    cell = Cell("activation", "relu", 8, 8, "onnx-legacy", 17, "onnxruntime")
    good = CellResult(cell, "ok", max_abs=0.0, seconds=1.0, versions={"onnx": "1"}).to_json()
    bad = [good | {"max_abs": "x"}, good | {"blame": {"a": 1}}, good | {"versions": [1]}, good | {"seconds": None},
           good | {"cell": good["cell"] | {"height": "8"}}, good | {"votes": ["x"]}]  # fmt: skip
    lines = [json.dumps(r) for r in [*bad, good]] + ["[" * 100_000 + "]" * 100_000]
    journal = Journal(tmp_path / "sweep.jsonl")
    journal.path.write_text("\n".join(lines) + "\n")
    done = journal.read()
    assert list(done) == [cell.id] and done[cell.id].max_abs == 0.0 and journal.skipped == 7


def test_ctrl_c_in_a_bench_worker_is_an_interrupt_not_a_failed_row(capfd: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C reaches the whole process group: the worker exits quietly (130), the parent sees an interrupt."""
    import signal

    from poolkit.bench.measurement import BenchSettings
    from poolkit.bench.worker import start_timer

    timer = start_timer("eager", "cpu", BenchSettings(threads=1))
    try:
        with pytest.raises(PoolkitError, match="unknown request"):  # the worker is in its loop, in Python
            timer._call("bogus")
        os.kill(timer.worker.pid, signal.SIGINT)
        timer.worker.proc.wait(timeout=60)
        with pytest.raises(KeyboardInterrupt):
            timer.round("fp32", 1, 0)
    finally:
        timer.shutdown()
    assert timer.worker.proc.returncode == 130
    assert "Traceback" not in capfd.readouterr().err
