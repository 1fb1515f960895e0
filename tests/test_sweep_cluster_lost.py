"""sweep --scheduler never waits forever: not a Dask scheduler, a scheduler gone mid-sweep, no workers
left (issue 20). The cells in flight are never journaled as crashed, so a resume runs them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolkit.cli import app
from poolkit.sweep import cluster
from poolkit.sweep.result import CellResult

runner = CliRunner()


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """Accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.extend(iter(lambda: server.accept()[0], None)), daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def http_server() -> Iterator[str]:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)  # a handler stuck on Dask's bytes blocks no shutdown
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_silent_listener_is_refused_within_the_bound(silent_listener: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "CONNECT_S", 1.5)  # 10 s in use; before the fix: forever
    started = time.monotonic()
    with pytest.raises(cluster.PoolkitError) as info:
        cluster.check_cluster(silent_listener, None)
    assert time.monotonic() - started < 5 and info.value.exit_code == 2
    assert str(info.value) == (
        f"cannot reach the Dask scheduler at {silent_listener}: no Dask handshake within 1.5 s (is it a Dask scheduler?)"
    )


def test_an_http_server_as_scheduler_is_one_line_within_the_bound(
    http_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "CONNECT_S", 1.5)
    address = http_server
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--layer", "activation", "--scheduler", address, "--out", str(out)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output[-500:]
    assert lines[0].startswith(f"error: cannot reach the Dask scheduler at {address}: ")
    assert not list(tmp_path.iterdir())  # no journal, no report


class FakeClient:
    def __init__(self, status: str = "running", workers: int = 1) -> None:
        self.status, self.workers = status, workers

    def scheduler_info(self) -> dict[str, dict[str, object]]:
        return {"workers": {f"w{i}": {} for i in range(self.workers)}}


class FakeFuture:
    def __init__(self, outcome: object) -> None:
        self.outcome = outcome

    def result(self) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FuturesCancelledError(BaseException):  # what distributed raises once its scheduler is gone
    pass


def scripted_wait(steps: list[object]):  # type: ignore[no-untyped-def]
    """distributed.wait, scripted: each call finishes the given futures, or raises, or times out."""

    def wait(pending: set[FakeFuture], timeout: float, return_when: str) -> tuple[set[FakeFuture], set[FakeFuture]]:
        step = steps.pop(0) if steps else TimeoutError()
        if isinstance(step, BaseException):
            raise step
        done = {f for f in pending if f in step}  # type: ignore[operator]
        return done, pending - done

    return wait


def test_a_scheduler_lost_mid_sweep_stops_it_and_journals_nothing_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "POLL_S", 0.01)
    ok = FakeFuture(CellResult("c1", "pass"))  # type: ignore[arg-type]
    cancelled = FakeFuture(FuturesCancelledError("2 Futures cancelled:\nReasons: scheduler-connection-lost"))
    broken = FakeFuture(OSError("Stream is closed"))  # distributed's CommClosedError is an OSError
    for client, steps, in_flight in (
        (FakeClient(), [{ok}, FuturesCancelledError("2 Futures cancelled")], {"c2": broken}),
        (FakeClient(), [{ok}, {cancelled}], {"c2": cancelled}),
        (FakeClient(), [{ok}, {broken}], {"c2": broken}),
        (FakeClient(status="closed"), [{ok}], {"c2": FakeFuture(None)}),
    ):
        journaled: list[CellResult] = []
        futures = {ok: "c1", **{f: c for c, f in in_flight.items()}}
        with pytest.raises(cluster.PoolkitError) as info:  # before the fix: c2 journaled as crashed, exit 0
            cluster.collect(client, futures, "tcp://h:1", journaled.append, wait=scripted_wait(list(steps)))
        assert info.value.exit_code == 1
        assert str(info.value).startswith("lost the Dask scheduler at tcp://h:1")
        assert "\n" not in str(info.value)
        assert [r.cell for r in journaled] == ["c1"]


def test_a_cluster_without_workers_is_given_up_not_waited_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "POLL_S", 0.01)
    monkeypatch.setattr(cluster, "NO_WORKERS_S", 0.1)  # 30 s in use; before the fix: forever
    journaled: list[CellResult] = []
    with pytest.raises(cluster.PoolkitError, match="^the Dask cluster at tcp://h:1 has had no workers for 0.1 s$"):
        cluster.collect(FakeClient(workers=0), {FakeFuture(None): "c1"}, "tcp://h:1", journaled.append,
                        wait=scripted_wait([]))  # fmt: skip
    assert journaled == []


def test_a_task_that_fails_on_a_live_cluster_is_still_a_crashed_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "POLL_S", 0.01)
    bad = FakeFuture(ValueError("boom"))
    journaled: list[CellResult] = []
    cluster.collect(FakeClient(), {bad: "c1"}, "tcp://h:1", journaled.append, wait=scripted_wait([{bad}]))
    assert [(r.cell, r.outcome, r.reason) for r in journaled] == [
        ("c1", "crashed", "dask task failed: ValueError: boom")
    ]
