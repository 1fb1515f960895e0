"""Where each runtime is timed: a worker process of its own (as onnxruntime_perf_test, trtexec and
pyperf do), or this process with --in-process; both through the worker base in `services.workers`.

One worker per runtime and device lives for a whole bench run. Its service holds a `LocalTimer`;
the parent sends it the same batch every runtime gets and asks for rounds of samples, so it can
interleave rounds across runtimes. A request is (method, *args); a reply is ("ok", result) or
("error", message, exit_code), the same in both places, so a runtime that raises is a failed row
either way. A worker that dies (a crash in a runtime) fails its row with its exit code, and a fresh
one is started for the next model; one stopped by Ctrl-C is an interrupt, never a failed row.
A worker whose runtime's threads spin waits, after each round, until they are idle (`process`), so
the next runtime's round starts on quiet cores.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from poolkit.bench import process
from poolkit.bench.loop import Clock
from poolkit.bench.measurement import BenchSettings
from poolkit.bench.timer import LocalTimer, Opened, Round
from poolkit.common.errors import PoolkitError, one_line
from poolkit.runtimes.capabilities import Preloads
from poolkit.runtimes.registry import runtime_class
from poolkit.services.workers import InProcessWorker, ServiceSpec, SubprocessWorker, Worker, WorkerDied

if TYPE_CHECKING:
    import numpy as np

    from poolkit.services.artifacts import ModelArtifacts

ALLOWED = {"open", "round", "overhead", "profile", "close"}


def _no_settle() -> float:
    return 0.0


class TimerService:
    """The worker's side: a LocalTimer answering requests, every error turned into a reply."""

    def __init__(
        self,
        runtime: str,
        device: str,
        threads: int | None,
        spinning: bool,
        cuda_graphs: bool,
        clock: Clock = time.perf_counter,
        preload: bool = True,
        settle: bool = True,
    ) -> None:
        cls = runtime_class(runtime)
        if preload and issubclass(cls, Preloads):  # a first model's load time is not an import
            cls.preload()
        calm = process.settle if settle else _no_settle
        self.timer = LocalTimer(runtime, device, threads, spinning, cuda_graphs, clock, settle=calm)

    def __call__(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        method, args = message[0], message[1:]
        try:
            if method not in ALLOWED:
                raise PoolkitError(f"bench worker: unknown request {method!r}")
            return ("ok", getattr(self.timer, method)(*args))
        except PoolkitError as exc:
            return ("error", str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the parent turns it into a failed row
            return ("error", one_line(exc), 1)

    def close(self) -> None:
        self.timer.close()


class WorkerTimer:
    """The parent's handle on one runtime's timer: `LocalTimer`'s calls, answered by its service, in a worker
    process of its own or in this process (the same replies either way)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def _call(self, method: str, *args: Any) -> Any:
        try:
            reply = self.worker.request((method, *args))
        except WorkerDied as died:
            if died.interrupted:  # Ctrl-C reached the worker first: not a failed row
                raise KeyboardInterrupt from None
            raise PoolkitError(str(died), exit_code=1) from None
        if reply[0] == "ok":
            return reply[1]
        raise PoolkitError(reply[1], exit_code=reply[2])

    def open(
        self,
        models_dir: str,
        model: str,
        precision: str,
        batches: list[np.ndarray],
        warmup: int,
        expected: list[list[np.ndarray]] | None = None,
        model_obj: ModelArtifacts | None = None,
    ) -> Opened:
        shared = (model_obj,) if self.worker.local else ()  # an open model is never copied to a process
        opened: Opened = self._call("open", models_dir, model, precision, batches, warmup, expected, *shared)
        return opened

    def round(self, slot: str, n: int, e2e: int) -> Round:
        samples: Round = self._call("round", slot, n, e2e)
        return samples

    def overhead(self, slot: str, iters: int) -> float | None:
        p50: float | None = self._call("overhead", slot, iters)
        return p50

    def profile(self, slot: str, iters: int = 20) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call("profile", slot, iters)
        return found

    def close(self, slot: str | None = None) -> None:
        if self.alive:
            with contextlib.suppress(PoolkitError):
                self._call("close", slot)

    def shutdown(self) -> None:
        self.worker.stop()


def start_timer(runtime: str, device: str, settings: BenchSettings, clock: Clock = time.perf_counter) -> WorkerTimer:
    """A timer for one runtime on one device: in this process, or a worker process of its own."""
    graphs = settings.cuda_graphs and device == "cuda"
    args = (runtime, device, settings.threads, settings.spinning, graphs)
    name = runtime_class(runtime).name
    if settings.in_process:
        service = TimerService(*args, clock=clock, preload=False, settle=settings.settle)
        return WorkerTimer(InProcessWorker(service, name))
    return WorkerTimer(
        SubprocessWorker(ServiceSpec(TimerService, (*args, time.perf_counter, True, settings.settle)), name)
    )


class Timers:
    """One timer per runtime and device for the whole run, started when first asked for."""

    def __init__(self, settings: BenchSettings, clock: Clock = time.perf_counter) -> None:
        self.settings, self.clock = settings, clock
        self._timers: dict[tuple[str, str, int | None], WorkerTimer] = {}

    def get(self, runtime: str, device: str, threads: int | None = None) -> WorkerTimer:
        """The timer of `runtime` on `device` at `threads` (default: the settings' count)."""
        threads = threads or self.settings.threads
        key = (runtime, device, threads)
        timer = self._timers.get(key)
        if timer is not None and not timer.alive:
            timer.shutdown()  # died with the previous model: start afresh
            timer = None
        if timer is None:
            settings = replace(self.settings, threads=threads)
            timer = self._timers[key] = start_timer(runtime, device, settings, self.clock)
        return timer

    def start_all(self, keys: list[tuple[str, str, int | None]]) -> None:
        """Start the timers of every (runtime, device, threads) the run will ask for, at once."""
        for runtime, device, threads in keys:
            self.get(runtime, device, threads)

    def shutdown(self) -> None:
        """Every worker is asked to end first, then each is waited for: they wind down together."""
        for timer in self._timers.values():
            timer.worker.request_stop()
        for timer in self._timers.values():
            timer.shutdown()
        self._timers.clear()

    def abandon(self) -> None:
        """Ctrl-C or an error: end every worker at once, never waiting for one still inside a call."""
        for timer in self._timers.values():
            timer.worker.abandon()
        self._timers.clear()
