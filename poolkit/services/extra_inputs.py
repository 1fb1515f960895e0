"""A runtime on a model with several inputs, fed one array by verify, bench or show (see `ExtraInputs`).

Its own module so the wrapper can be read apart from `artifacts.py`, which opens a model's files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poolkit.runtimes.base import Runtime


class ExtraInputs(Runtime):
    """A runtime on a model with several inputs, fed one array by verify, bench or show.

    The array goes to the first input; the others get seeded uniform noise of their recorded shapes,
    made once per batch size, so every runtime compared on a batch sees the very same inputs and
    bench times no noise-making. A tuple given by the caller is passed through as it is.
    """

    def __init__(self, inner: Runtime, extra_shapes: list[tuple[int, ...]], seed: int) -> None:
        self._inner = inner
        self._extra_shapes = extra_shapes
        self._seed = seed
        self._extras: dict[int, tuple[Any, ...]] = {}

    def __getattr__(self, name: str) -> Any:  # name, device, provider, threads...: the runtime's own
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def inputs(self, batch: Any) -> tuple[Any, ...]:
        if isinstance(batch, tuple):
            return batch
        n = len(batch)
        if n not in self._extras:
            self._extras[n] = tuple(
                np.random.default_rng(self._seed + i + 1).random((n, *shape), dtype=np.float32)
                for i, shape in enumerate(self._extra_shapes)
            )
        return (batch, *self._extras[n])

    def prepare(self, batch: Any) -> Any:
        return self._inner.prepare(self.inputs(batch))

    def infer(self, prepared: Any) -> Any:
        return self._inner.infer(prepared)

    def to_numpy(self, outputs: Any) -> Any:
        return self._inner.to_numpy(outputs)

    def close(self) -> None:
        self._inner.close()
