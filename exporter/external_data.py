"""ONNX external data: tensors an ONNX file keeps in other files beside it, covered by the hashes.

An ONNX file may store any tensor (an initializer, a Constant's value, one inside a Loop's body) in
another file named by a relative `location`; ONNX Runtime reads those bytes when it loads the
model. The `.onnx` file's own sha256 says nothing about them, so poolkit records the sha256 of every
external file at export and, before an artifact is loaded, checks that each file it names is inside
the models folder and listed in its record with that hash: a changed `.bin` beside an unchanged
`.onnx` is a failed check, never a silent pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poolkit.common.errors import DataError
from poolkit.common.files import inside, sha256_file

MAX_EXTERNAL_FILES = 10_000


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph and its subgraphs (initializers, sparse ones, attribute values)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(attributes: Any) -> Iterator[Any]:
    for attr in attributes:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _tensors(attr.g)
        for sub in attr.graphs:
            yield from _tensors(sub)


def external_locations(onnx_file: Path) -> list[str]:
    """The files (relative locations, as written) whose bytes `onnx_file` asks a runtime to load."""
    import onnx

    proto = onnx.load(str(onnx_file), load_external_data=False)
    found: dict[str, None] = {}
    tensors = [*_tensors(proto.graph)]
    for function in proto.functions:
        for node in function.node:
            tensors.extend(_attribute_tensors(node.attribute))
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            found.setdefault(entries.get("location", ""), None)
    if len(found) > MAX_EXTERNAL_FILES:
        raise DataError(f"{onnx_file} names {len(found):,} external data files (at most {MAX_EXTERNAL_FILES:,})")
    return list(found)


def external_hashes(onnx_file: Path) -> dict[str, str]:
    """location -> sha256 of every external data file of a freshly exported `onnx_file`."""
    folder = Path(onnx_file).parent
    return {loc: sha256_file(inside(folder, loc, "external data")) for loc in external_locations(onnx_file)}


def external_problem(onnx_file: Path, models_dir: Path, recorded: dict[str, str]) -> str | None:
    """Why the external data of `onnx_file` cannot be trusted, or None (none, or every file as recorded)."""
    try:
        locations = external_locations(onnx_file)
    except DataError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - not a readable ONNX file: the runtime will say so when it opens it
        return None
    for loc in locations:
        try:
            path = inside(models_dir, loc, "external data")
        except DataError as exc:
            return f"{onnx_file}: {exc}"
        digest = recorded.get(loc)
        if digest is None:
            return f"{onnx_file} loads external data {loc!r} that the manifest has no sha256 for: it cannot be trusted"
        if not path.is_file():
            return f"external data file missing: {path}"
        actual = sha256_file(path)
        if actual != digest:
            return (
                f"sha256 mismatch for the external data {path}: manifest says {digest[:12]}…, file is {actual[:12]}… "
                "(changed after export)"
            )
    return None
