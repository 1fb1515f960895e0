"""The one timing loop: every figure bench prints (steady state, warm-up, first run, end to end, the
Identity overhead) comes out of `timed_loop`, given its hooks.

Like torch.utils.benchmark's measurement loop, what varies is passed in: the clock (a parameter,
so tests drive it with known ticks), the synchronisation (`Sync`: nothing on the CPU, device
events on CUDA, whose wait is inside the host time), what one call is (`call(i)`, the i-th of the
round, so inputs can rotate), and what happens outside the clock before and after a call
(`before(i)`: refilling a captured graph's input; `after(i, out)`: the output check).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from poolkit.runtimes.capabilities import DeviceEvents

Clock = Callable[[], float]


class Sync(Protocol):
    """Brackets each call inside the clock: `begin` before it, `end` waits until its work is done."""

    def begin(self) -> Any: ...

    def end(self, token: Any) -> float | None:
        """Wait for the call's work; its device time in ms where a device clock knows it."""


class HostSync:
    """The CPU: a call returns when its work is done; nothing to wait for, no device time."""

    def begin(self) -> Any:
        return None

    def end(self, token: Any) -> float | None:
        return None


class EventSync:
    """A device: events recorded before and after the launch; waiting for the second is the synchronisation."""

    def __init__(self, events: DeviceEvents) -> None:
        self.events = events

    def begin(self) -> Any:
        return self.events.record()

    def end(self, token: Any) -> float | None:
        return self.events.elapsed_ms(token, self.events.record())


def sync_for(events: DeviceEvents | None) -> Sync:
    return EventSync(events) if events is not None else HostSync()


@dataclass
class Samples:
    """Host seconds per call and, where the device has a clock, device milliseconds per call."""

    host_s: list[float] = field(default_factory=list)
    device_ms: list[float] = field(default_factory=list)


def timed_loop(
    call: Callable[[int], Any],
    n: int,
    clock: Clock = time.perf_counter,
    sync: Sync | None = None,
    before: Callable[[int], None] | None = None,
    after: Callable[[int, Any], None] | None = None,
) -> Samples:
    """Call `call(i)` for i in range(n), each timed alone between two clock readings;
    `before(i)` and `after(i, outputs)` run outside them."""
    sync = sync or HostSync()
    out = Samples()
    for i in range(n):
        if before is not None:
            before(i)
        token = sync.begin()
        t0 = clock()
        result = call(i)
        device = sync.end(token)
        out.host_s.append(clock() - t0)
        if device is not None:
            out.device_ms.append(device)
        if after is not None:
            after(i, result)
        # Freed before the next call, as in a user's loop. Held over, every call allocated its output
        # while the last one was alive, in fresh pages the system faults in: eager conv's p50 was 2-3x
        # torch.utils.benchmark's here (1.5 ms against 0.6 ms at batch 64).
        del result
    return out
