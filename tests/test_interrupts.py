"""Ctrl-C and SIGTERM stop poolkit within seconds, even inside a runtime call that never returns, and
no process outlives it (issue 20). Signals need the real CLI: these tests start it as a process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from poolkit.cli.interrupts import descendants
from poolkit.common.files import sha256_file
from poolkit.common.signals import deferred, signals_held
from poolkit.exporter.manifest import load_manifest, save_manifest

CLI = str(Path(sys.executable).parent / "poolkit")
VERIFY = ["verify", "--data", "synthetic", "--no-sensitivity", "--inputs", "raw", "--batches", "1", "--batch-size", "4"]


def rehash(folder: Path, fmt: str) -> None:
    records = load_manifest(folder)
    for r in records:
        if r.name == "relu" and r.format == fmt:
            r.sha256 = sha256_file(folder / str(r.path))
    save_manifest(folder, records)


def endless_onnx_loop(path: Path) -> None:
    """relu.onnx replaced by a `Loop` with a trip count of 2^62: one ONNX Runtime call that never returns."""
    state = [
        helper.make_tensor_value_info("i", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
    ]
    out = [
        helper.make_tensor_value_info(n, t, s) for n, t, s in (("cond_out", TensorProto.BOOL, []), ("v_out", 1, None))
    ]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Relu", ["v_in"], ["v_out"])],
        "body", state, out,
    )  # fmt: skip
    trip = helper.make_tensor("trip", TensorProto.INT64, [], [2**62])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 32, 32])
    loop = helper.make_node("Loop", ["trip", "cond", "input"], ["output"], body=body)
    model = helper.make_model(helper.make_graph([loop], "g", [x], [y], initializer=[trip, cond]))
    model.opset_import[0].version, model.ir_version = 17, 8
    onnx.save(model, str(path))


class Announced(torch.nn.Module):
    """relu that prints a marker (TorchScript's print reaches stdout at once): the test knows it is inside."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("inside-forward")
        return torch.relu(x)


class Endless(torch.nn.Module):
    """A forward that never returns: TorchScript's interpreter loops in C++, Python's handler never runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x)
        print("inside-forward")
        while bool(y.sum() >= 0):
            y = torch.relu(y)
        return y


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_marker(proc: subprocess.Popen[str], timeout_s: float = 90) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    seen, end = b"", time.monotonic() + timeout_s
    while b"inside-forward" not in seen:
        assert time.monotonic() < end and proc.poll() is None, (seen[-300:], proc.poll())
        time.sleep(0.1)
        with contextlib.suppress(BlockingIOError):
            seen += os.read(fd, 65536)


def stopped(proc: subprocess.Popen[str], signum: int, children: list[int]) -> tuple[int, str, float]:
    """Send `signum`; the exit code, stderr and seconds it took; asserts no child is left."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=20)  # before the fix: never (killed here)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("poolkit did not stop within 20 s of the signal") from None
    took = time.monotonic() - sent
    deadline = time.monotonic() + 3  # a SIGKILLed child takes a moment to go
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.05)
    assert not [pid for pid in children if alive(pid)], "a child of poolkit outlived it"
    return proc.returncode, err, took


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-600:]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow  # the real CLI, up to the runtime call: ~15 s on 2 shared cores
def test_ctrl_c_stops_verify_inside_an_endless_onnx_runtime_loop(models: Path) -> None:
    endless_onnx_loop(models / "relu.onnx")
    rehash(models, "onnx")
    torch.jit.script(Announced()).save(str(models / "relu.torchscript.pt"))
    rehash(models, "torchscript")
    before = sorted(p.name for p in models.rglob("*"))
    proc = start([*VERIFY, "--models", str(models), "--runtime", "torchscript,onnxruntime",
                  "--results", str(models / "r")])  # fmt: skip
    wait_for_marker(proc)  # the TorchScript row ran: ONNX Runtime's row, the endless Loop, comes next
    time.sleep(3)
    code, err, took = stopped(proc, signal.SIGINT, descendants(proc.pid))
    line = one_line(err)
    assert code == 130 and took < 10, (code, took)  # ~2 s; 10 on a loaded machine
    assert line.startswith("error: interrupted; ") and "did not return within 1.5 s" in line
    assert sorted(p.name for p in models.rglob("*")) == before  # no report, nothing half-written


@pytest.mark.slow
def test_sigterm_stops_verify_inside_a_torchscript_forward_that_never_returns(models: Path) -> None:
    torch.jit.script(Endless()).save(str(models / "relu.torchscript.pt"))
    rehash(models, "torchscript")
    proc = start([*VERIFY, "--models", str(models), "--runtime", "torchscript", "--results", str(models / "r")])
    wait_for_marker(proc)
    time.sleep(0.5)
    code, err, took = stopped(proc, signal.SIGTERM, descendants(proc.pid))
    line = one_line(err)
    assert code == 143 and took < 10, (code, took)  # ~2 s; 10 on a loaded machine
    assert line.startswith("error: terminated (SIGTERM); ") and "did not return within 1.5 s" in line
    assert not (models / "r").exists()


BUSY_PARENT = textwrap.dedent("""
    import sys, time
    from poolkit.services.workers import CallService, ServiceSpec, SubprocessWorker
    worker = SubprocessWorker(ServiceSpec(CallService), "test")
    try:
        print(worker.pid, flush=True)
        worker.request((time.sleep, (120,)))  # a bench round, a sweep cell: a long call in the worker
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        worker.stop()  # before the fix: waited for the call to end (120 s), then 5 s more
""")


def test_ctrl_c_in_a_parent_waiting_on_a_busy_worker_kills_the_worker_at_once() -> None:
    """bench's and sweep's parent loop, in miniature (the real bench takes a minute to start its workers here)."""
    parent = subprocess.Popen([sys.executable, "-c", BUSY_PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    sent = time.monotonic()
    parent.send_signal(signal.SIGINT)  # to the parent only, as a `kill -INT` or a supervisor sends it
    out, _ = parent.communicate(timeout=20)
    assert out.split() == ["interrupted"] and time.monotonic() - sent < 5
    assert not alive(child)


PARENT = textwrap.dedent("""
    import sys, time
    from poolkit.services.workers import CallService, ServiceSpec, SubprocessWorker
    worker = SubprocessWorker(ServiceSpec(CallService), "test")
    worker.send((time.sleep, (120,)))
    print(worker.pid, flush=True)
    time.sleep(120)
""")


def test_a_killed_parent_leaves_no_worker_even_one_inside_a_call() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # the child is inside time.sleep(120)
    assert alive(child)
    parent.kill()  # SIGKILL: no handler, no finally; before the fix the child slept on
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_signal_inside_signals_held_is_raised_when_the_block_ends() -> None:
    saved = signal.signal(signal.SIGINT, deferred(signal.default_int_handler))
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                # What happens when another thread (ONNX Runtime's, torch's) took the signal: Python
                # runs the handler in the main thread inside the block. It must wait for the block's end.
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # type: ignore[operator]
                steps.append("rename 1")
                steps.append("rename 2")
            steps.append("after")  # never: the interrupt is raised as the block ends
    finally:
        signal.signal(signal.SIGINT, saved)
    assert steps == ["rename 1", "rename 2"]


COMMITTER = textwrap.dedent("""
    import os, signal, sys, threading, time
    from poolkit.cli.interrupts import watch
    from poolkit.common.signals import deferred, signals_held
    signal.signal(signal.SIGINT, deferred(signal.default_int_handler))
    stop = watch(lambda signum: ("interrupted; by the watchdog", 130))
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # takes the signal, as ORT's threads do
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2.5)  # a commit longer than the watchdog's grace
            print("commit done", flush=True)
    except KeyboardInterrupt:
        print("unwound", flush=True)
        sys.exit(7)
""")


def test_the_watchdog_never_cuts_a_commit_and_lets_the_main_thread_unwind() -> None:
    done = subprocess.run([sys.executable, "-c", COMMITTER], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.split()) == (7, ["commit", "done", "unwound"]), done.stderr[-400:]
    assert "watchdog" not in done.stderr
