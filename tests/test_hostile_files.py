"""Files that decide nothing (issue 20, security): replay files, manifests, ONNX files and their
external data, crafted in the tests with the `onnx` API, and what poolkit does with them.

Each test runs the real CLI (through CliRunner) and asserts the exit code, the one error line and
that nothing else changed: no code ran, no file was written outside the folder the user gave.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.common.files import sha256_file
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts

runner = CliRunner()


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_error(result, code: int) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr[-500:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-500:]
    assert "Traceback" not in result.output
    return lines[0]


def crafted_onnx(path: Path, node: onnx.NodeProto, initializers: list[TensorProto] = (), opset: int = 17) -> None:  # type: ignore[assignment]
    """An ONNX model input [batch,3,32,32] -> output, one node; as poolkit names its inputs and outputs."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 32, 32])
    graph = helper.make_graph([node], "g", [x], [y], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


def rehash(folder: Path, name: str = "relu", **changes: object) -> None:
    """Record the ONNX file's sha256 in its manifest record (a file that poolkit's hash check passes)."""
    records = load_manifest(folder)
    for r in records:
        if r.name == name and r.format == "onnx":
            r.sha256 = sha256_file(folder / str(r.path))
            for key, value in changes.items():
                setattr(r, key, value)
    save_manifest(folder, records)


def replay_file(path: Path, models: Path, x: np.ndarray, expected: np.ndarray, **meta: object) -> Path:
    labels = {"models_dir": str(models.resolve()), "model": "relu", "format": "onnx", "runtime": "onnxruntime",
              "device": "cpu", "first_image": 0, "input_set": "raw", "atol": 1e-5, "rtol": 1e-5} | meta  # fmt: skip
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(labels)), input=x, expected_0=expected, actual_0=expected)
    return path


# --- replay files are data -------------------------------------------------------------------------


def test_a_replay_file_never_imports_the_py_its_metadata_names(models: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nimport torch\nclass Net(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x\n"
    )
    records = load_manifest(models)
    for r in [r for r in records if r.name == "relu"]:  # a crafted entry: the user model evil_Net
        records.append(
            type(r)(
                **{
                    **r.__dict__,
                    "name": "evil_Net",
                    "import_path": str(evil),
                    "object_name": "Net",
                    "source_sha256": sha256_file(evil),
                    "spec": f"{evil}:Net",
                }
            )  # fmt: skip
        )
    save_manifest(models, records)
    x = np.zeros((1, 3, 32, 32), np.float32)
    before = files_of(models)
    for named in (f"{evil}:Net", "evil_Net"):
        path = replay_file(tmp_path / "r.npz", models, x, x, model=named, runtime="eager")
        line = one_error(runner.invoke(app, ["verify", "--replay", str(path), "--models", str(models)]), 2)
        assert "evil" in line
        assert not marker.exists()  # the file named in the .npz never ran
    assert files_of(models) == before


@pytest.mark.parametrize("atol", [1e30, "inf", "nan", -1.0])
def test_a_replay_file_never_sets_the_tolerance(models: Path, tmp_path: Path, atol: object) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    wrong = np.maximum(x, 0) + 1.0  # relu's output, off by 1.0 everywhere
    path = replay_file(tmp_path / "r.npz", models, x, wrong, atol=atol, rtol=atol)
    result = runner.invoke(app, ["verify", "--replay", str(path), "--models", str(models), "--json"])
    assert result.exit_code == 1, result.output[-400:]  # a wrong output fails, whatever the file says
    shown = json.loads(result.stdout)
    assert (shown["replayed"]["atol"], shown["replayed"]["rtol"]) == (1e-5, 1e-5)  # the command line's defaults
    result = runner.invoke(app, ["verify", "--replay", str(path), "--models", str(models), "--atol", "2"])
    assert result.exit_code == 0, result.output[-400:]  # the user's own --atol is honoured


def test_replay_labels_are_plain_names_and_never_reach_the_terminal_raw(models: Path, tmp_path: Path) -> None:
    x = np.zeros((1, 3, 32, 32), np.float32)
    path = replay_file(tmp_path / "r.npz", models, x, x, model="\x1b]0;pwned\x07relu")
    line = one_error(runner.invoke(app, ["verify", "--replay", str(path), "--models", str(models)]), 2)
    assert "\x1b" not in line and "\x07" not in line and "not a plain name" in line


def test_a_replay_over_the_image_limit_is_refused_before_loading(models: Path, tmp_path: Path) -> None:
    x = np.zeros((70_000, 1, 1, 1), np.float32)  # more images than one batch may hold
    path = replay_file(tmp_path / "r.npz", models, x, x)
    line = one_error(runner.invoke(app, ["verify", "--replay", str(path), "--models", str(models)]), 2)
    assert "70,000 images; the limit is 65,536" in line


# --- manifests: names never steer writes, one bad entry locks out nothing --------------------------


def test_a_manifest_name_never_steers_where_verify_writes(models: Path, tmp_path: Path) -> None:
    crafted_onnx(models / "wrong.onnx", helper.make_node("Identity", ["input"], ["output"]))  # not relu
    records = load_manifest(models)
    onnx_record = next(r for r in records if r.format == "onnx")
    escape = type(onnx_record)(**{**onnx_record.__dict__, "name": "../../../escaped", "path": "wrong.onnx",
                                  "sha256": sha256_file(models / "wrong.onnx")})  # fmt: skip
    save_manifest(models, [*records, escape])
    results = tmp_path / "deep" / "er" / "results"
    outside_before = {p for p in tmp_path.rglob("*") if results not in (p, *p.parents)}
    result = runner.invoke(
        app,
        [
            "verify",
            "--models",
            str(models),
            "--results",
            str(results),
            "--data",
            "synthetic",
            "--batches",
            "1",
            "--no-sensitivity",
            "--json",
        ],  # fmt: skip
    )
    assert result.exit_code == 1, result.output[-500:]
    rows = {(r["model"], r["runtime"]): r for r in json.loads(result.stdout)["rows"]}
    assert rows[("relu", "onnxruntime")]["status"] == "passed"  # the good entries still verify
    assert rows[("relu", "torchscript")]["status"] == "passed"
    bad = rows[("entry_0", "onnxruntime")]  # the crafted entry, sorted first, named by its place
    assert bad["status"] == "failed" and "not a plain name" in bad["reason"]
    written = {p for p in tmp_path.rglob("*") if results not in (p, *p.parents)} - {results, *results.parents}
    assert written == outside_before  # nothing outside --results
    assert not (results / "verify_failures").exists()  # the crafted entry never ran


def test_one_malformed_entry_locks_out_nothing_and_is_kept(models: Path) -> None:
    data = json.loads((models / "manifest.json").read_text())
    data["artifacts"].append({"name": "ghost", "format": "onnx", "status": "ok", "input_shape": "oops"})
    (models / "manifest.json").write_text(json.dumps(data))
    (model,) = open_artifacts(models, ["relu"])
    assert model.problem("onnxruntime") is None and model.problem("torchscript") is None
    line = one_error(
        runner.invoke(app, ["verify", "--models", str(models), "-m", "ghost", "--results", str(models)]), 2
    )
    assert f"entry {len(data['artifacts']) - 1} " in line and "input_shape" in line
    # an export of another model keeps the malformed entry as it was (the user may want to repair it)
    export_models(resolve_models(["relu"]), models, ExportOptions(formats=("torchscript",), force=True))
    rows = json.loads((models / "manifest.json").read_text())["artifacts"]
    assert [r["input_shape"] for r in rows if r["name"] == "ghost"] == ["oops"]


def test_what_export_writes_for_odd_folder_names_verify_reads(relu_models: Path, tmp_path: Path) -> None:
    """No-break space, zero-width space and a newline in the folder of a model of your own."""
    for i, odd in enumerate(["a\u00a0b", "z\u200bw", "new\nline"]):
        folder = tmp_path / odd
        folder.mkdir()
        source = folder / "net.py"
        source.write_text(
            "import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return x * 2\n"
        )
        out = tmp_path / f"m{i}"
        shutil.copytree(relu_models, out)
        spec = f"{source}:Net"
        result = runner.invoke(app, ["export", "-m", spec, "-f", "torchscript", "--input-shape", "3x4x4",
                                     "--out", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output[-400:]
        relu_entries = len(load_manifest(relu_models))
        assert [r.name for r in load_manifest(out)].count("relu") == relu_entries  # the zoo model's entries still read
        (model,) = open_artifacts(out, [spec])
        assert model.problem("torchscript") is None
        result = runner.invoke(app, ["verify", "--models", str(out), "-m", spec, "--data", "synthetic",
                                     "--no-sensitivity", "--runtime", "torchscript", "--results", str(out / "r")])  # fmt: skip
        assert result.exit_code == 0, result.output[-400:]


# --- ONNX files: every byte they load is hashed, nothing in them reaches the terminal raw -----------


def external_model(models: Path) -> None:
    """relu.onnx replaced by input + W, W stored in w.bin beside it."""
    w = numpy_helper.from_array(np.zeros((1, 3, 32, 32), np.float32), "W")
    onnx_path = models / "relu.onnx"
    crafted_onnx(onnx_path, helper.make_node("Add", ["input", "W"], ["output"]), [w])
    model = onnx.load(str(onnx_path))
    onnx.save(model, str(onnx_path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)  # fmt: skip


def test_onnx_external_data_not_in_the_manifest_is_refused(models: Path) -> None:
    external_model(models)
    rehash(models)  # the .onnx file's own hash matches: only w.bin is unaccounted for
    (model,) = open_artifacts(models, ["relu"])
    assert "loads external data 'w.bin' that the manifest has no sha256 for" in str(model.problem("onnxruntime"))


def test_changed_onnx_external_data_is_a_failed_check(models: Path) -> None:
    external_model(models)
    rehash(models, external_data={"w.bin": sha256_file(models / "w.bin")})
    (model,) = open_artifacts(models, ["relu"])
    assert model.problem("onnxruntime") is None  # recorded and unchanged: trusted
    weights = bytearray((models / "w.bin").read_bytes())
    weights[:4] = np.float32(7).tobytes()
    (models / "w.bin").write_bytes(bytes(weights))
    (model,) = open_artifacts(models, ["relu"])
    assert "sha256 mismatch for the external data" in str(model.problem("onnxruntime"))
    result = runner.invoke(app, ["verify", "--models", str(models), "--runtime", "onnxruntime", "--data", "synthetic",
                                 "--no-sensitivity", "--json", "--results", str(models / "r")])  # fmt: skip
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "failed" and "w.bin" in row["reason"]


def test_external_data_outside_the_folder_is_refused(models: Path, tmp_path: Path) -> None:
    external_model(models)
    shutil.move(models / "w.bin", tmp_path / "w.bin")
    model = onnx.load(str(models / "relu.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../w.bin"
    onnx.save(model, str(models / "relu.onnx"))
    rehash(models, external_data={"../w.bin": sha256_file(tmp_path / "w.bin")})
    (model_artifacts,) = open_artifacts(models, ["relu"])
    assert "leaves the folder" in str(model_artifacts.problem("onnxruntime"))


def test_control_characters_in_an_onnx_file_never_reach_the_terminal(models: Path) -> None:
    node = helper.make_node("\x1b]0;pwned\x07Relu", ["input"], ["output"], domain="\x1b[2J\x1b[31mevil")
    crafted_onnx(models / "relu.onnx", node)
    model = onnx.load(str(models / "relu.onnx"))
    model.opset_import.append(helper.make_opsetid("\x1b[2J\x1b[31mevil", 1))
    onnx.save(model, str(models / "relu.onnx"))
    rehash(models)
    result = runner.invoke(app, ["verify", "--models", str(models), "--runtime", "onnxruntime", "--data", "synthetic",
                                 "--no-sensitivity", "--results", str(models / "r")])  # fmt: skip
    assert result.exit_code == 1, result.output[-500:]
    assert "\x1b]" not in result.output and "\x07" not in result.output and "\x1b[2J" not in result.output
    assert "\\x1b" in result.output  # shown, as a visible escape


# --- regular files only -------------------------------------------------------------------------------


def test_a_fifo_as_manifest_or_replay_file_is_refused_not_waited_on(models: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    fifo_dir = tmp_path / "fifo_models"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "manifest.json")
    os.mkfifo(tmp_path / "replay.npz")
    for args in (
        ["verify", "--models", str(fifo_dir)],
        ["verify", "--replay", str(tmp_path / "replay.npz"), "--models", str(models)],
    ):
        cli = str(Path(sys.executable).parent / "poolkit")
        done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and "is a FIFO: poolkit reads regular files only" in line


def test_a_symlink_loop_in_the_models_folder_is_that_artifacts_failure(models: Path) -> None:
    (models / "relu.onnx").unlink()
    (models / "relu.onnx").symlink_to("relu.onnx")  # a loop: resolve() raised RuntimeError before
    result = runner.invoke(app, ["verify", "--models", str(models), "--data", "synthetic", "--no-sensitivity",
                                 "--json", "--results", str(models / "r")])  # fmt: skip
    assert result.exit_code == 1 and "poolkit bug" not in result.output
    rows = {r["runtime"]: r for r in json.loads(result.stdout)["rows"]}
    assert "is a symlink loop" in rows["onnxruntime"]["reason"] and rows["torchscript"]["status"] == "passed"


def test_a_crafted_export_journal_renames_nothing(models: Path) -> None:
    (models / ".export-journal.json").write_text(json.dumps({"renames": [["../../victim", "relu.onnx"]]}))
    before = files_of(models)
    line = one_error(runner.invoke(app, ["verify", "--models", str(models), "--results", str(models / "r")]), 2)
    assert "is not a poolkit export journal" in line and "is not a staged file" in line
    assert files_of(models) == before
