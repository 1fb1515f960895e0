"""What bench, show and verify export before they run: the formats their runtimes read, where a model lacks them.

A model with no record at all is exported in every `--format all` format plus the ones asked for.
A model that has records but none of a format a runtime reads (`verify -r aoti` after a plain
`poolkit export`: `aoti` is not in `--format all`) gets that format only, exported with the options
its existing files were: the same seed, dtype, input shape and open axes, so its weights (and the
other files' records) stay as they are. Where those options cannot be reproduced (a model of your
own, whose weights come from its code or `--weights`; files exported with different seeds), it is
refused in one line naming the exact `poolkit export` command. A format whose export failed has a
record saying so: it is reported, not exported again on every run.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from poolkit.common.errors import PoolkitError
from poolkit.exporter.build import DEFAULT_SEED
from poolkit.exporter.export import export_models
from poolkit.exporter.formats.registry import ALL_FORMATS, format_named
from poolkit.exporter.manifest import ExportRecord, load_manifest
from poolkit.exporter.options import ExportOptions
from poolkit.exporter.zoo import ModelRef, resolve_model


def ensure_exported(refs: list[ModelRef], out_dir: Path, formats: tuple[str, ...] = ()) -> list[str]:
    """Export what `refs` lack in `out_dir` (everything, or the missing `formats`); returns the names exported."""
    records: dict[str, list[ExportRecord]] = {}
    for record in load_manifest(out_dir):
        records.setdefault(record.name, []).append(record)
    new = [r for r in refs if r.name not in records]
    if new:
        export_models(new, out_dir, ExportOptions(formats=tuple(dict.fromkeys((*ALL_FORMATS, *formats)))))
    exported = [r.name for r in new]
    for ref in (r for r in refs if r.name in records):
        have = {r.format for r in records[ref.name] if r.precision == "fp32"}
        missing = tuple(f for f in formats if f not in have)
        if missing:
            export_models([ref], out_dir, options_like(ref, records[ref.name], missing, out_dir))
            exported.append(ref.name)
    return exported


def refs_named(names: list[str], out_dir: Path) -> list[ModelRef]:
    """The models `names` mean (a zoo name, a spec, PATH.py:NAME, or an artifact name of `out_dir`'s
    manifest); a name that is none of these is left out, for the command to report as it does."""
    specs = {r.name: r.spec for r in load_manifest(out_dir) if r.import_path is None}
    refs: list[ModelRef] = []
    for name in names:
        for text in (name, specs.get(name)):
            try:
                refs.append(resolve_model(text)) if text else None
                break
            except PoolkitError:
                continue
    return list({r.name: r for r in refs}.values())


def options_like(ref: ModelRef, records: list[ExportRecord], formats: tuple[str, ...], out_dir: Path) -> ExportOptions:
    """ExportOptions that write `formats` of `ref` as its existing `records` were written, or a
    PoolkitError naming the command to run where they cannot be reproduced."""
    fp32 = [r for r in records if r.precision == "fp32"] or records
    # TorchScript takes any batch whatever it was exported with: its record says nothing of --static-batch.
    sized = [r for r in fp32 if not format_named(r.format).any_batch] or fp32
    template = next((r for r in sized if r.ok), None) or next((r for r in fp32 if r.ok), None) or fp32[0]
    spec_dtype = ref.spec.dtype if ref.spec is not None else "float32"
    options = ExportOptions(
        formats=formats,
        seed=template.seed,
        dtype=None if template.dtype == spec_dtype else template.dtype,
        dynamic_batch=template.dynamic_batch or template not in sized,
        static_batch_size=64 if template.dynamic_batch or template not in sized else int(template.input_shape[0]),
        dynamic_shape="height" in template.dynamic_axes,
        input_shape=None if template.input_shapes else tuple(int(d) for d in template.input_shape[1:]),
    )
    why = None
    if ref.user is not None:
        why = "a model of your own: its weights come from its code or --weights, which poolkit does not replay"
    elif len({r.seed for r in fp32}) > 1 or len({r.dtype for r in fp32}) > 1:
        why = "its files were exported with different seeds or dtypes"
    if why:
        raise PoolkitError(
            f"'{ref.name}' has no {', '.join(formats)} artifact in {out_dir} and poolkit cannot export one as its other"
            f" files were exported ({why}): run '{export_command(ref, options, out_dir)}'"
        )
    return options


def export_command(ref: ModelRef, options: ExportOptions, out_dir: Path) -> str:
    """The `poolkit export` command line that writes `options.formats` of `ref` with these options."""
    words = ["poolkit", "export", "-m", ref.given]
    for fmt in options.formats:
        words += ["--format", fmt]
    words += ["--out", str(out_dir)]
    if options.seed != DEFAULT_SEED:
        words += ["--seed", str(options.seed)]
    if options.dtype:
        words += ["--dtype", options.dtype]
    if not options.dynamic_batch:
        words += ["--static-batch", "--batch-size", str(options.static_batch_size)]
    words += ["--dynamic-shape" if options.dynamic_shape else "--static-shape"]
    if options.input_shape:
        words += ["--input-shape", "x".join(str(d) for d in options.input_shape)]
    return shlex.join(words)
