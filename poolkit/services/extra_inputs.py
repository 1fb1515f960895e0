"""How a model with several inputs is fed one array by verify, bench and show (see `Feed`).

Its own module so the feed can be read apart from `artifacts.py`, which opens a model's files.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import numpy as np

from poolkit.runtimes.base import Runtime


class Feed:
    """The batch as every runtime of one model is fed: the array given, or for a model with several
    inputs a tuple, the array first and seeded uniform noise of the others' recorded shapes after.

    The noise is made once per batch size, so every runtime compared on a batch sees the very same
    inputs and bench times no noise-making. A tuple given by the caller is passed through as it is.
    """

    def __init__(self, extra_shapes: list[tuple[int, ...]], seed: int) -> None:
        self.extra_shapes = extra_shapes
        self.seed = seed
        self._extras: dict[int, tuple[np.ndarray, ...]] = {}

    def __call__(self, batch: np.ndarray | tuple[np.ndarray, ...]) -> np.ndarray | tuple[np.ndarray, ...]:
        if isinstance(batch, tuple) or not self.extra_shapes:
            return batch
        n = len(batch)
        if n not in self._extras:
            self._extras[n] = tuple(
                np.random.default_rng(self.seed + i + 1).random((n, *shape), dtype=np.float32)
                for i, shape in enumerate(self.extra_shapes)
            )
        return (batch, *self._extras[n])


class ExtraInputs:
    """A runtime on a model with several inputs, fed one array (verify, show): `prepare` feeds it through
    the model's `Feed`; everything else is the runtime's own."""

    def __init__(self, inner: Runtime, feed: Feed) -> None:
        self._inner = inner
        self._feed = feed

    def __getattr__(self, name: str) -> Any:  # name, device, provider, threads...: the runtime's own
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def prepare(self, batch: Any) -> Any:
        return self._inner.prepare(self._feed(batch))

    def infer(self, prepared: Any) -> Any:
        return self._inner.infer(prepared)

    def to_numpy(self, outputs: Any) -> Any:
        return self._inner.to_numpy(outputs)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> ExtraInputs:
        return self

    @classmethod
    def cuda_problem(cls) -> str | None:
        return None  # asked of the runtime's class before it is opened, never of this wrapper

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
