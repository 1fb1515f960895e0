"""Nothing lost (issue 20, data loss): a re-export stopped at any point, a full disk, name clashes,
SIGTERM sent to the real CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.exporter.export import ExportOptions, export_models
from poolkit.exporter.manifest import load_manifest, save_manifest
from poolkit.exporter.transaction import JOURNAL_NAME
from poolkit.exporter.zoo import resolve_models
from poolkit.services.artifacts import open_artifacts

runner = CliRunner()
TS = ExportOptions(formats=("torchscript",))  # conv has weights; TorchScript exports in a blink


class Killed(BaseException):
    """Stands in for a kill: not an Exception, so nothing in poolkit treats it as a failed row."""


@pytest.fixture(scope="module")
def conv_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conv_models")
    assert not export_models(resolve_models(["conv", "relu"]), out, TS).failed
    return out


def whole(folder: Path) -> int:
    """The seed of the export the folder holds, after checking it is whole (every hash matches)."""
    records = {r.name: r for r in load_manifest(folder)}
    for name in ("conv", "relu"):
        (model,) = open_artifacts(folder, [name])
        assert model.problem("torchscript") is None, model.problem("torchscript")
        assert model.problem("eager") is None
    assert not [p.name for p in folder.iterdir() if p.name.endswith((".staged", ".tmp"))]
    assert not (folder / JOURNAL_NAME).exists()
    return records["conv"].seed


def test_a_reexport_stopped_at_any_file_operation_leaves_the_old_or_the_new_export(
    conv_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    seen = set()
    for stop_at in range(1, 10):
        folder = tmp_path / f"m{stop_at}"
        shutil.copytree(conv_models, folder)
        calls = [0]

        def replace(src, dst, calls=calls, stop_at=stop_at):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] == stop_at:
                raise Killed  # the process dies right here, between two renames
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        with contextlib.suppress(Killed):
            export_models(resolve_models(["conv"]), folder, ExportOptions(formats=("torchscript",), seed=7))
        monkeypatch.setattr(os, "replace", real_replace)
        seen.add(whole(folder))  # the next poolkit finds the old export or the new one, whole
    assert seen == {0, 7}  # both outcomes were reached: the stops fell before and after the commit


def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing(conv_models: Path, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:120]}")
    try:
        folder = tiny / "m"
        shutil.copytree(conv_models, folder, ignore=shutil.ignore_patterns("relu*"))
        records = [r for r in load_manifest(folder) if r.name == "conv"]
        save_manifest(folder, records)
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        filler = tiny / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):  # fill the disk...
            while True:
                os.write(fd, b"\0" * 1024)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - 6000))  # ...but for a page or so
        os.close(fd)
        result = runner.invoke(app, ["export", "-m", "conv", "-f", "torchscript", "--seed", "3", "--out", str(folder)])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, result.output[-400:]
        assert len(lines) == 1 and lines[0].startswith(f"error: cannot use {folder}/")
        assert "No space left on device" in lines[0]
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing staged left, nothing changed
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_a_name_clash_is_refused_before_anything_is_written(conv_models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(conv_models, folder)
    records = load_manifest(folder)
    for r in records:  # the zoo's maxpool_ceil, as far as the manifest is concerned
        if r.name == "relu":
            r.name, r.spec = "maxpool_ceil", "maxpool(k=3,ceil=true)"
    save_manifest(folder, records)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    source = tmp_path / "maxpool.py"
    source.write_text("import torch\ndef ceil():\n    return torch.nn.MaxPool2d(3, ceil_mode=False)\n")
    result = runner.invoke(app, ["export", "-m", f"{source}:ceil", "--input-shape", "3x8x8", "--out", str(folder)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output[-400:]
    assert "would be named 'maxpool_ceil'" in lines[0] and "maxpool(k=3,ceil=true)" in lines[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # the same for two files of the same name in two folders
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "net.py").write_text("import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
                                               f"        return x + {len(sub)}\n")  # fmt: skip
    args = ["-f", "torchscript", "--input-shape", "3x4x4", "--out", str(folder)]
    assert runner.invoke(app, ["export", "-m", f"{tmp_path / 'a' / 'net.py'}:Net", *args]).exit_code == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = runner.invoke(app, ["export", "-m", f"{tmp_path / 'b' / 'net.py'}:Net", *args])
    assert result.exit_code == 2 and "would be named 'net_Net'" in result.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_sigterm_to_a_real_reexport_leaves_the_old_or_the_new_export(conv_models: Path, tmp_path: Path) -> None:
    cli = str(Path(sys.executable).parent / "poolkit")
    outcomes = set()
    for delay in (0.0, 1.5, 4.0):
        folder = tmp_path / f"m{delay}"
        shutil.copytree(conv_models, folder)
        proc = subprocess.Popen(
            [cli, "export", "-m", "conv", "-m", "relu", "-f", "torchscript", "--seed", "5", "--out", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 143, -signal.SIGTERM), (
            delay,
            err,
        )  # done, terminated cleanly, or before Python ran
        if proc.returncode == 143:
            assert err.strip().splitlines() == ["error: terminated (SIGTERM); files already written are kept"]
        elif proc.returncode < 0:
            assert not err.strip()  # killed before poolkit installed its handler (Python still starting)
        outcomes.add(whole(folder))
    assert outcomes <= {0, 5}
