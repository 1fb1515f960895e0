"""The shape of the code: one runtime registry, runtimes as context managers, thin CLI, one installed package."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import numpy as np
import pytest
import torch

from poolkit.cli.app import app
from poolkit.cli.options import parse_runtimes, split_values
from poolkit.common.errors import DeviceError, PoolkitError
from poolkit.runtimes.base import DEVICES, Runtime, run_batch
from poolkit.runtimes.capabilities import (
    DeviceTimed,
    HasLayerOutputs,
    HostRun,
    IdentityModel,
    Preloads,
    Profiled,
    ReferenceLoop,
    Spinning,
    TimedOpen,
)
from poolkit.runtimes.registry import RUNTIMES, canonical_runtime, open_runtime

ROOT = Path(__file__).resolve().parent.parent


def test_registry_declares_what_every_backend_is() -> None:
    assert list(RUNTIMES) == [
        "eager",
        "torchscript",
        "onnxruntime",
        "compile",
        "tensorrt",
        "eager-cl",
        "export",
        "aoti",
        "openvino",
        "openvino-f32",
        "openvino-bf16",
    ]
    reads = {name: cls.reads for name, cls in RUNTIMES.items()}
    assert reads == {
        "eager": "module",
        "torchscript": "torchscript",
        "onnxruntime": "onnx",
        "compile": "module",
        "tensorrt": "onnx",
        "eager-cl": "module",
        "export": "pt2",
        "aoti": "aoti",
        "openvino": "onnx",
        "openvino-f32": "onnx",
        "openvino-bf16": "onnx",
    }
    assert {name: cls.devices for name, cls in RUNTIMES.items() if cls.devices != DEVICES} == {
        "tensorrt": ("cuda",),
        **{name: ("cpu",) for name in ("openvino", "openvino-f32", "openvino-bf16")},
    }
    assert all(Runtime in cls.__mro__ and cls.name == name for name, cls in RUNTIMES.items())


def test_each_runtime_declares_its_capabilities() -> None:
    """What bench and verify may ask of a backend beyond the core, by protocol: a runtime that lacks one
    takes the plain path (TensorRT and eager-cl do not inherit the layer outputs of the class they share code with)."""

    def having(capability: type) -> set[str]:
        return {name for name, cls in RUNTIMES.items() if issubclass(cls, capability)}

    torch_runtimes = {"eager", "torchscript", "compile", "eager-cl", "export", "aoti"}
    openvino = {"openvino", "openvino-f32", "openvino-bf16"}
    assert having(HasLayerOutputs) == {"eager", "torchscript", "onnxruntime"}
    assert having(Spinning) == having(Profiled) == having(HostRun) == {"onnxruntime", "tensorrt"}
    assert having(DeviceTimed) == having(TimedOpen) == {"onnxruntime", "tensorrt", *torch_runtimes}
    assert having(IdentityModel) == {"eager", "torchscript", "onnxruntime", "tensorrt", "eager-cl", "export", *openvino}
    assert having(ReferenceLoop) == having(Preloads) == set(RUNTIMES)


def test_unknown_runtime_device_and_old_spellings() -> None:
    with pytest.raises(PoolkitError, match="unknown runtime 'tflite' \\(known: eager, torchscript, onnxruntime"):
        open_runtime("tflite", None, "cpu")
    with pytest.raises(PoolkitError, match="unknown device 'tpu'"):
        open_runtime("eager", torch.nn.Identity(), "tpu")
    with pytest.raises(DeviceError, match="the tensorrt runtime runs on --device cuda only"):
        open_runtime("tensorrt", Path("x.onnx"), "cpu")
    assert canonical_runtime("onnx") == "onnxruntime"  # show --runtime onnx, one more release
    assert parse_runtimes(["eager,onnx", "torchscript", "eager"], ()) == ("eager", "onnxruntime", "torchscript")
    assert parse_runtimes(None, ("eager",)) == ("eager",)
    assert split_values(["17, 20", "21"]) == ["17", "20", "21"]


def test_runtime_is_a_context_manager_that_restores_threads() -> None:
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    x = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2) - 4
    with open_runtime("eager", torch.nn.ReLU(), "cpu", threads=wanted) as rt:
        assert rt.threads == wanted == torch.get_num_threads()
        (out,) = run_batch(rt, x)
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(out, np.maximum(x, 0))


def test_identity_sources_open_on_their_runtime(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((3, 3, 4, 4), dtype=np.float32)
    for name in ("eager", "torchscript", "onnxruntime"):
        cls = RUNTIMES[name]
        assert issubclass(cls, IdentityModel)
        source = cls.identity_source(tmp_path, (3, 4, 4))
        with open_runtime(name, source, "cpu") as rt:
            np.testing.assert_array_equal(run_batch(rt, x)[0], x)


def test_every_command_speaks_the_same_runtime_and_device_options() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name in ("verify", "bench", "show", "sweep"):
        options = {opt for p in group.commands[name].params for opt in p.opts}  # type: ignore[attr-defined]
        assert {"--runtime", "--device", "--json"} <= options, name


def test_cli_is_thin() -> None:
    """No command body (after its docstring) over 40 lines, no CLI module over 300 lines."""
    bodies = {}
    for path in sorted((ROOT / "poolkit" / "cli").glob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) < 300, path.name
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d).split("(")[0].endswith("app.command") for d in node.decorator_list
            ):
                start = node.body[1 if ast.get_docstring(node) else 0].lineno
                bodies[node.name] = (node.end_lineno or start) - start + 1
    assert set(bodies) == {"zoo", "export", "verify", "show", "bench", "sweep", "report", "list_", "prune"}
    assert all(lines <= 40 for lines in bodies.values()), bodies


@pytest.mark.slow
def test_wheel_installs_only_poolkit_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("poolkit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        top = next(n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(top).decode().split() == ["poolkit"]
        names = zf.namelist()
    assert "poolkit/exporter/spec.py" in names and "poolkit/runtimes/registry.py" in names
    assert not any(n.startswith(("exporter/", "runtimes/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "import poolkit.cli, sys; sys.argv = ['poolkit', 'zoo', '-m', 'conv', '--json']; poolkit.cli.app()"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert '"output_shapes": [\n      [\n        64,\n        6,\n        30,\n        30' in out.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import poolkit.exporter as e; print(e.__file__)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(target / "poolkit" / "exporter" / "__init__.py")


# ---------------------------------------------------------------- the import graph and module sizes

# Modules allowed over 300 lines: data tables, each with why.
LONG_MODULES_DATA = {
    "exporter/spec.py": "the parameter tables of every layer kind (Conv2d, pools, activations) are data",
}
MAX_MODULE_LINES = 300


def import_circles(package: str = "poolkit") -> list[list[str]]:
    """Every strongly connected component of more than one module in an installed package's import
    graph, each sorted. grimp (which import-linter uses) counts imports inside functions too; those
    under `if TYPE_CHECKING:` are left out, as they never run."""
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graph is small (about 100 modules)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_import_graph_has_no_circle() -> None:
    circles = import_circles()
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_circle_finder_sees_imports_inside_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The finder itself, on a package whose only circle closes through an import inside a function."""
    pkg = tmp_path / "circlepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import circlepkg.b\n")
    (pkg / "b.py").write_text("def f():\n    import circlepkg.a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import circlepkg.d\n")
    (pkg / "d.py").write_text("import circlepkg.c\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_circles("circlepkg") == [["circlepkg.a", "circlepkg.b"]]


def test_no_module_over_300_lines() -> None:
    long = {}
    for folder in ("poolkit", "exporter", "runtimes"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            lines = len(path.read_text().splitlines())
            if lines > MAX_MODULE_LINES and rel not in LONG_MODULES_DATA:
                long[rel] = lines
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


def test_lazy_imports_keep_start_up_light() -> None:
    """The imports left inside functions are there for these two: `poolkit --help` and a sweep
    worker's start never load torch, onnx or onnxruntime."""
    code = (
        "import sys, poolkit.cli, poolkit.sweep.worker; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
