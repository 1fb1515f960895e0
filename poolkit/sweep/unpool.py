"""The sweep's `unpool` group: max pools with return_indices, each followed by the MaxUnpool that mirrors it."""

from __future__ import annotations

from typing import Any

from poolkit.exporter.spec import LayerSpec, parse_spec

# (pool kind, unpool kind, dims, [(kernel, stride, padding, ceil_mode)]): the unpool mirrors its pool.
UNPOOL_PAIRS: tuple[tuple[str, str, int, tuple[tuple[int, int, int, bool], ...]], ...] = (
    (
        "maxpool",
        "maxunpool",
        2,
        ((2, 2, 0, False), (3, 2, 1, False), (3, 3, 0, False), (2, 1, 0, False), (3, 2, 0, True), (2, 2, 0, True)),
    ),  # fmt: skip
    ("maxpool1d", "maxunpool1d", 1, ((2, 2, 0, False), (3, 2, 1, True))),
    ("maxpool3d", "maxunpool3d", 3, ((2, 2, 0, False), (3, 2, 1, True))),
)


def unpool_pairs() -> list[tuple[str, int]]:
    """`maxpool(...,indices=true) | maxunpool(...)` specs, with the pool's spatial dimensions.

    MaxUnpool's default output size is what a floor-mode pool of that size came from: with ceil_mode
    or an odd input it differs from the pool's input, which is exactly what exporters get wrong.
    """
    out = []
    for pool, unpool, dims, configs in UNPOOL_PAIRS:
        for k, s, p, ceil in configs:
            shared: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": p}
            pooled = {**shared, "return_indices": True, **({"ceil_mode": True} if ceil else {})}
            first, second = LayerSpec(pool, tuple(pooled.items())), LayerSpec(unpool, tuple(shared.items()))
            out.append((str(parse_spec(f"{first} | {second}")), dims))
    return out
