"""Each runtime timed in its own worker process, as onnxruntime_perf_test, trtexec and pyperf do.

One worker per runtime and device lives for a whole bench run (started with the `spawn` context,
so it inherits no thread pool or CUDA context from the parent). It holds a `LocalTimer`; the
parent sends it the same batch every runtime gets and asks for rounds of samples over a pipe, so
it can interleave rounds across runtimes. Nothing runs in a worker between requests: it blocks on
the pipe, so an idle worker costs no CPU (ONNX Runtime's spinning threads stop spinning shortly
after a run; the parent waits `SETTLE_S` between handing over from one runtime to the next).

A request is (method, args); a reply is ("ok", result) or ("error", message, exit_code). A worker
that dies (a crash in a runtime) fails its row with the exit code, and a fresh one is started for
the next model.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from poolkit.common.errors import PoolkitError, one_line

SETTLE_S = 0.005  # pause between two runtimes' rounds: lets a spinning ORT pool go idle
INTERRUPT_CODES = (130, -signal.SIGINT)  # a worker stopped by Ctrl-C
ALLOWED = {"open", "round", "overhead", "profile", "close"}


def worker_main(
    conn: Any, runtime: str, device: str, threads: int | None, ort_spinning: bool, cuda_graphs: bool
) -> None:
    """The worker's loop: serve requests until ("quit",) or the pipe closes.

    Ctrl-C reaches the worker too (same process group): it exits quietly with 130, no traceback of
    its own; the parent reports the interrupt once. SIGINT is handled explicitly: a process started
    in the background by a shell inherits it ignored, and the worker must still stop on it.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _serve(conn, runtime, device, threads, ort_spinning, cuda_graphs)
    except KeyboardInterrupt:
        os._exit(130)


def _serve(conn: Any, runtime: str, device: str, threads: int | None, ort_spinning: bool, cuda_graphs: bool) -> None:
    from poolkit.bench.timer import LocalTimer

    preload(runtime)
    timer = LocalTimer(runtime, device, threads, ort_spinning, cuda_graphs)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        method, args = request[0], request[1:]
        if method == "quit":
            break
        try:
            if method not in ALLOWED:
                raise PoolkitError(f"bench worker: unknown request {method!r}")
            conn.send(("ok", getattr(timer, method)(*args)))
        except PoolkitError as exc:
            conn.send(("error", str(exc), exc.exit_code))
        except Exception as exc:  # noqa: BLE001 - the parent turns it into a failed row
            conn.send(("error", one_line(exc), 1))
    timer.close()
    conn.close()


def preload(runtime: str) -> None:
    """Import the runtime's engine before anything is timed: a first model's load time is not an import."""
    from poolkit.runtimes.registry import runtime_class

    if runtime_class(runtime).engine == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import torch
        import torch.jit  # noqa: F401

        del torch


class WorkerTimer:
    """The parent's handle on one worker: the same calls as LocalTimer, answered by the other process."""

    process_kind = "isolated"

    def __init__(self, runtime: str, device: str, threads: int | None, ort_spinning: bool, cuda_graphs: bool) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.runtime_name, self.device = runtime, device
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=worker_main,
            args=(child, runtime, device, threads, ort_spinning, cuda_graphs),
            name=f"poolkit-bench-{runtime}-{device}",
            daemon=True,
        )
        self.process.start()
        child.close()

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def _call(self, method: str, *args: Any) -> Any:
        try:
            self.conn.send((method, *args))
            reply = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.process.join(timeout=5)
            if self.process.exitcode in INTERRUPT_CODES:  # Ctrl-C reached the worker first: not a failed row
                raise KeyboardInterrupt from None
            raise PoolkitError(
                f"the {self.runtime_name} worker process died (exit code {self.process.exitcode})", exit_code=1
            ) from None
        if reply[0] == "ok":
            return reply[1]
        raise PoolkitError(reply[1], exit_code=reply[2])

    def open(self, models_dir: str, model: str, batch: Any, warmup: int, model_obj: Any = None) -> Any:
        return self._call("open", models_dir, model, batch, warmup)

    def round(self, n: int, e2e: int) -> Any:
        return self._call("round", n, e2e)

    def overhead(self, iters: int) -> float | None:
        return self._call("overhead", iters)

    def profile(self, iters: int = 20) -> Any:
        return self._call("profile", iters)

    def close(self) -> None:
        if self.alive:
            with contextlib.suppress(PoolkitError):
                self._call("close")

    def shutdown(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(("quit",))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


def plain_ort_loop(path: str, threads: int | None, batch: Any, warmup: int, iters: int) -> list[float]:
    """The loop a user would write, nothing of poolkit: a session with defaults, `run`, perf_counter (ms).

    Run in a process of its own (`run_apart`), it is what poolkit's isolated ONNX Runtime figure
    must agree with.
    """
    import time

    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def run_apart(fn: Any, *args: Any) -> Any:
    """Call `fn(*args)` in a fresh spawned process and return its result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
