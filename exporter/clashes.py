"""Two different models never share an artifact name in one folder.

Artifact names are short (`maxpool_ceil`, a user's `STEM_NAME`), so different models can land on
the same one: a user's `maxpool.py:ceil` and the zoo's `maxpool_ceil`, or `a/net.py:Net` and
`b/net.py:Net`. Exporting the second would replace the first's files and records, silently. The
clash is refused before anything is built into the folder, naming both models.
"""

from __future__ import annotations

from pathlib import Path

from poolkit.common.errors import SpecError
from poolkit.exporter.manifest import ExportRecord
from poolkit.exporter.zoo import ModelRef


def refuse_clashes(refs: list[ModelRef], records: list[ExportRecord], out_dir: Path) -> None:
    """A SpecError (exit 2) when a model to export has the name of a different model in `out_dir`."""
    held = {r.name: r.spec for r in records if r.raw is None and r.spec}
    for ref in refs:
        other = held.get(ref.name)
        if other is not None and other != ref.spec_text:
            raise SpecError(
                f"'{ref.spec_text}' would be named '{ref.name}', but '{ref.name}' in {out_dir} is '{other}': "
                "export it to another --out folder (nothing was written)"
            )
