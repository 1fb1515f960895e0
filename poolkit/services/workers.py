"""One worker base for every command that runs its work in another process: bench's timers, sweep's cells.

A worker answers messages with a *service*: an object made from a picklable `ServiceSpec` (a
factory and its arguments) that turns one message into one reply. `InProcessWorker` calls the
service here (bench's `--in-process`); `SubprocessWorker` runs it in a child Python started as
`python -m poolkit.services.workers` (a plain process, not a multiprocessing child, so it can be
started from anywhere, a daemonic Dask worker included; it inherits no thread pool or CUDA
context) and talks to it over two pipes, one message at a time. Nothing runs in a child between
messages: it blocks on its pipe, so an idle worker costs no CPU.

One SIGINT policy for every child: SIGINT is handled explicitly (a process started in the
background by a shell inherits it ignored, and must still stop on Ctrl-C), and a child stopped by
it exits quietly with 130, no traceback of its own; the parent reports the interrupt once. A
child that dies otherwise is `WorkerDied` with its exit code, which the caller turns into one line.
No child outlives its parent: on Linux the kernel kills it when the parent dies (`die_with_parent`),
so a poolkit stopped by Ctrl-C, SIGTERM or `kill -9` leaves no worker running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar, Protocol

from poolkit.common.signals import die_with_parent

EXIT_INTERRUPTED = 130
INTERRUPT_CODES = (EXIT_INTERRUPTED, -signal.SIGINT)  # a child stopped by Ctrl-C: by its handler, or by the signal


def interrupted(exit_code: int | None) -> bool:
    """Whether a child's exit code means Ctrl-C stopped it (never a crash to report)."""
    return exit_code in INTERRUPT_CODES


def install_sigint_policy() -> None:
    """Ctrl-C raises KeyboardInterrupt here, even where the process inherited SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Service(Protocol):
    """What a worker runs: one reply per message, and `close` when the worker stops."""

    def __call__(self, message: Any) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServiceSpec:
    """How a child builds its service: `factory(*args)`, both picklable (a module-level class or function)."""

    factory: Callable[..., Service]
    args: tuple[Any, ...] = ()

    def build(self) -> Service:
        return self.factory(*self.args)


class WorkerDied(Exception):
    """The child went away before replying: a crash, a kill, or Ctrl-C (`interrupted`)."""

    def __init__(self, name: str, exit_code: int | None) -> None:
        super().__init__(f"the {name} worker process died (exit code {exit_code})")
        self.name, self.exit_code = name, exit_code

    @property
    def interrupted(self) -> bool:
        return interrupted(self.exit_code)


class Worker(ABC):
    """A service somewhere: `request` sends one message and returns its reply."""

    local: ClassVar[bool]  # True: messages are not copied (objects may be passed as they are)
    name: str

    @abstractmethod
    def send(self, message: Any) -> None: ...

    @abstractmethod
    def recv(self) -> Any:
        """The reply to the last message sent; WorkerDied when the worker went away first."""

    def request(self, message: Any) -> Any:
        self.send(message)
        return self.recv()

    @property
    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def stop(self) -> None:
        """Let the service close and the worker end; safe to call twice."""

    def abandon(self) -> None:
        """End the worker now, whatever it is doing (the caller was interrupted)."""
        self.stop()

    def request_stop(self) -> None:
        """Ask the worker to end without waiting for it (`stop` then waits): several wind down at once.
        An in-process worker has nothing to ask."""
        return None


class InProcessWorker(Worker):
    """The service called in this process: the same protocol, no copies, nothing to die."""

    local = True

    def __init__(self, service: Service, name: str) -> None:
        self.service, self.name = service, name
        self._reply: Any = None

    def send(self, message: Any) -> None:
        self._reply = self.service(message)

    def recv(self) -> Any:
        reply, self._reply = self._reply, None
        return reply

    @property
    def alive(self) -> bool:
        return True

    def stop(self) -> None:
        self.service.close()


class SubprocessWorker(Worker):
    """The service in a child Python; `conn` becomes readable when a reply arrives or the child dies."""

    local = False

    def __init__(self, spec: ServiceSpec, name: str) -> None:
        self.name = name
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poolkit.services.workers", str(to_child_r), str(from_child_w), str(os.getpid())],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.conn = Connection(from_child_r, writable=False)
        self.busy = False  # a message is out whose reply was not read (the child is inside a call)
        self.stopping = False  # asked to end (`request_stop`): `stop` only waits
        self.send(spec)
        self.busy = False  # building the service replies nothing

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, message: Any) -> None:
        self.busy = message is not None
        with contextlib.suppress(OSError):  # the child is gone: recv reads EOF and says how it ended
            self.outbox.send(message)

    def recv(self) -> Any:
        try:
            reply = self.conn.recv()
            self.busy = False
            return reply
        except (EOFError, OSError):
            raise WorkerDied(self.name, self.exit_code()) from None

    def poll(self, timeout_s: float) -> bool:
        """Whether a reply (or the child's death) is there to read within `timeout_s`."""
        try:
            return self.conn.poll(timeout_s)
        except (OSError, EOFError):
            return True

    def exit_code(self, wait_s: float = 5.0) -> int:
        """The child's exit code, waiting `wait_s` for it to end, then killing it."""
        try:
            return self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        self.close()

    def abandon(self) -> None:
        self.kill()

    def stop(self) -> None:
        """Ask the child to finish (its service closes); kill it if it does not within 5 s, or at once
        when it is still inside a call (the parent stopped waiting for it: Ctrl-C, an error)."""
        if self.busy:
            self.kill()
            return
        self.request_stop()
        self.exit_code(5.0)
        self.close()

    def request_stop(self) -> None:
        if not self.busy and not self.stopping:
            self.send(None)  # None leaves `busy` False: no reply is owed
            self.stopping = True

    def close(self) -> None:
        for conn in (self.outbox, self.conn):
            with contextlib.suppress(OSError):
                conn.close()


class CallService:
    """A service that calls what it is sent: `(fn, args)` -> `fn(*args)` (a module-level function)."""

    def __call__(self, message: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
        fn, args = message
        return fn(*args)

    def close(self) -> None:
        """Nothing is held between calls."""


def run_apart(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a fresh child Python of its own (a reference timing away from poolkit's workers)."""
    worker = SubprocessWorker(ServiceSpec(CallService), name)
    try:
        return worker.request((fn, args))
    finally:
        worker.stop()


def child_main(argv: list[str]) -> int:
    """The child's loop: build the service from the first message, then answer until None or EOF."""
    install_sigint_policy()
    die_with_parent(int(argv[3]))
    inbox = Connection(int(argv[1]), writable=False)
    outbox = Connection(int(argv[2]), readable=False)
    try:
        try:
            spec: ServiceSpec = inbox.recv()
        except EOFError:
            return 0
        service = spec.build()
        try:
            while True:
                try:
                    message = inbox.recv()
                except EOFError:
                    return 0
                if message is None:
                    return 0
                outbox.send(service(message))
        finally:
            service.close()
    except KeyboardInterrupt:
        os._exit(EXIT_INTERRUPTED)  # quietly: the parent reports the interrupt once


if __name__ == "__main__":
    sys.exit(child_main(sys.argv))
