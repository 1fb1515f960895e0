"""Your own model's code cannot hang poolkit, end it silently, or break `--json` (issue 20)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from poolkit.cli import app

runner = CliRunner()
NET = "import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        {body}\n        return x * 2\n"
CLI = str(Path(sys.executable).parent / "poolkit")


def model_file(folder: Path, prelude: str = "", body: str = "pass") -> str:
    source = folder / "net.py"
    source.write_text(prelude + NET.format(body=body))
    return f"{source}:Net"


def test_a_non_daemon_thread_started_at_import_does_not_keep_poolkit_alive(tmp_path: Path) -> None:
    spec = model_file(tmp_path, "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,)).start()\n")
    done = subprocess.run(
        [CLI, "export", "-m", spec, "-f", "torchscript", "--input-shape", "3x4x4", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=180,  # before the fix: waits for the thread, an hour
    )
    assert done.returncode == 0, done.stderr[-400:]
    assert (tmp_path / "m" / "net_Net.torchscript.pt").is_file()


def test_os_exit_at_import_is_an_error_not_a_silent_success(tmp_path: Path) -> None:
    spec = model_file(tmp_path, "import os\nos._exit(0)\n")
    done = subprocess.run(
        [CLI, "export", "-m", spec, "-f", "torchscript", "--input-shape", "3x4x4", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and line.startswith("error: ") and "os._exit(0)" in line
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_json_stays_json_when_the_model_prints(tmp_path: Path) -> None:
    spec = model_file(tmp_path, body="print('hello from forward')")
    out = tmp_path / "m"
    args = ["-f", "torchscript", "--method", "trace", "--input-shape", "3x4x4", "--out", str(out)]
    assert runner.invoke(app, ["export", "-m", spec, *args]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "verify",
            "--models",
            str(out),
            "-m",
            spec,
            "--data",
            "synthetic",
            "--no-sensitivity",
            "--json",
            "--runtime",
            "torchscript",
            "--results",
            str(tmp_path / "r"),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output[-400:]
    assert json.loads(result.stdout)["passed"] is True  # stdout is the JSON and nothing else
    assert "hello from forward" in result.stderr


def test_only_threads_the_command_started_count_as_lingering() -> None:
    """A thread alive before the command (an earlier command's, a library's) and an idle
    concurrent.futures worker (torch's compile pool, joined by concurrent.futures at exit) never make
    poolkit `os._exit`: under pytest that ended the whole test run with exit 2, no summary."""
    import concurrent.futures
    import threading

    from poolkit.cli.app import lingering_threads

    stop = threading.Event()
    earlier = threading.Thread(target=stop.wait)
    earlier.start()
    before = set(threading.enumerate())
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.submit(lambda: None).result()  # an idle, non-daemon worker now
    mine = threading.Thread(target=stop.wait)
    mine.start()
    try:
        assert lingering_threads(before) == [mine]
    finally:
        stop.set()
        pool.shutdown()
        earlier.join()
        mine.join()


HUGE = (
    "import torch\n"
    "class Net(torch.nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.w = torch.nn.Parameter(torch.empty({params}, device='meta'))  # counted, never allocated\n"
    "    def forward(self, x):\n"
    "        return x * 2\n"
    "    @staticmethod\n"
    "    def example_input():\n"
    "        return torch.empty(1, {sample}, device='meta')\n"
)


def test_a_users_model_over_the_parameter_or_sample_limit_is_refused(tmp_path: Path) -> None:
    cases = {
        (134_217_729, "3, 4, 4"): "error: Net() in net.py has 134,217,729 parameters; the limit is 134,217,728",
        (10, "1, 5000, 5000"): "error: bad example_input of Net '1x5000x5000': 25,000,000 values a sample;"
        " the limit is 16,777,216",
    }
    for (params, sample), expected in cases.items():
        (tmp_path / "net.py").write_text(HUGE.format(params=params, sample=sample))
        out = tmp_path / "m"
        for args in (["zoo"], ["export", "-f", "torchscript", "--out", str(out)]):  # before the fix: both ran
            result = runner.invoke(app, [*args, "-m", f"{tmp_path / 'net.py'}:Net"])
            assert result.exit_code == 2, (args, result.output[-400:])
            assert result.stderr.strip().splitlines() == [expected], result.stderr[-400:]
        assert not out.exists() or not [p.name for p in out.iterdir() if not p.name.startswith(".")]
