"""Open the exported artifacts of a model: resolve the manifest, check every hash, rebuild eager.

verify, bench and show all start here. A runtime is then opened on a file or a module, never on a
manifest record: this module is the only bridge between the two. Every file is checked against
the sha256 poolkit wrote before anything reads it (a TorchScript file is code), paths from the
manifest must stay inside the models folder, and each file is hashed once per run.

A user's own model (`--model PATH.py:NAME`) is rebuilt from its recorded source file, refused
(exit 2) when that file changed since export. A model with several inputs is given one array by
verify, bench and show: its `feed` gives that array to the first input and seeded noise to the
others (bench feeds the tuple to the runtime; `open` hands out a runtime that does it itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from poolkit.common.errors import DataError, PoolkitError, one_line
from poolkit.common.files import inside, sha256_file
from poolkit.exporter.build import rebuild_model
from poolkit.exporter.formats.registry import FORMATS, format_named
from poolkit.exporter.layers import autocast_variant, with_dtype
from poolkit.exporter.manifest import ExportRecord, load_manifest
from poolkit.exporter.precision import AUTOCAST
from poolkit.exporter.user_model import UserModelRef, check_source_unchanged, rebuild_user_model
from poolkit.exporter.zoo import resolve_model
from poolkit.runtimes.base import Runtime
from poolkit.runtimes.registry import open_runtime, reader_of, runtime_class
from poolkit.services.extra_inputs import ExtraInputs, Feed

FORMAT_PREFERENCE = ("onnx", "torchscript")  # the record eager is rebuilt from when a model has both


class ArtifactProblem(PoolkitError):
    """An artifact that cannot be trusted or opened: a failed check (exit 1), not a usage error."""

    exit_code = 1


@dataclass
class ModelArtifacts:
    """Every record of one model in one models folder, and the files behind them, checked once."""

    name: str
    models_dir: Path
    records: dict[str, ExportRecord]  # by format, failed exports included
    # A user's model is rebuilt by importing its source: only when the user named it on the command
    # line (never from what a manifest says alone: a manifest can be written by anyone).
    trusted_sources: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    variants: list[ExportRecord] = field(default_factory=list)  # precision variants (export --precision)
    _checked: dict[str, str | None] = field(default_factory=dict, repr=False)
    _eager: Any = field(default=None, repr=False)
    _feed: Feed | None = field(default=None, repr=False)

    @property
    def reference(self) -> ExportRecord | None:
        """The record whose spec, seed and weights rebuild the eager module (any successful one)."""
        for fmt in FORMAT_PREFERENCE:
            record = self.records.get(fmt)
            if record is not None and record.ok:
                return record
        return next((r for r in self.records.values() if r.ok), None)

    def readers(self) -> tuple[str, ...]:
        """The runtimes that check this model when none is named: the default reader of every format
        it has a record of (`pt2` on `export`, `onnx` on `onnxruntime`...), failed exports included
        (their rows say why), in the formats' registry order."""
        return tuple(reader_of(fmt) for fmt in FORMATS if fmt in self.records)

    def record_for(self, runtime: str, precision: str = "fp32") -> ExportRecord | None:
        """The record `runtime` is opened on: the file of the format it reads (in `precision`: a variant's),
        or the reference record the module is rebuilt from."""
        reads = runtime_class(runtime).reads
        if reads == "module":
            return self.reference
        if precision == "fp32":
            return self.records.get(reads)
        return next((v for v in self.variants if v.format == reads and v.precision == precision), None)

    def _check(self, label: str, name: str | None, digest: str | None) -> str | None:
        """Why the file cannot be trusted, or None; a missing or null hash is a failure, never a skip."""
        if not name:
            return f"the manifest names no {label} file"
        key = f"{name}:{digest}"
        if key not in self._checked:
            path = inside(self.models_dir, name)
            if not path.is_file():
                self._checked[key] = f"{label} file missing: {path}"
            elif not digest:
                self._checked[key] = f"the manifest has no sha256 for {path}: it cannot be trusted"
            else:
                actual = sha256_file(path)
                self._checked[key] = (
                    None
                    if actual == digest
                    else f"sha256 mismatch for {path}: manifest says {digest[:12]}…, file is {actual[:12]}… "
                    "(changed after export)"
                )
        return self._checked[key]

    def problem(self, runtime: str, precision: str = "fp32") -> str | None:
        """Why `runtime` cannot run this model's artifact (in `precision`), or None: missing, failed
        export, changed file."""
        cls = runtime_class(runtime)
        if precision != "fp32" and cls.reads != "module":
            variant = self.record_for(runtime, precision)
            return self.variant_problem(variant) if variant else f"no {precision} {cls.reads} variant of '{self.name}'"
        if precision not in ("fp32", *AUTOCAST):
            return f"{cls.name} runs the module itself: of the variants, only autocast ({', '.join(AUTOCAST)})"
        record = self.record_for(runtime)
        if record is None:
            return f"no {cls.reads if cls.reads != 'module' else 'exported'} artifact for '{self.name}'"
        if record.raw is not None:  # a malformed manifest entry: its own reason
            return str(record.error)
        if not record.ok:
            return f"export failed: {record.error}"
        weights = self._check("weights", record.weights, record.weights_sha256)
        if cls.reads == "module":
            return weights
        artifact = self._check("artifact", record.path, record.sha256)
        if artifact is None and record.path:
            artifact = self._external(record)
        return artifact or weights

    def _external(self, record: ExportRecord) -> str | None:
        """Every byte an artifact loads is covered: the files its format reads beside it (an ONNX file's
        external data), each against its record."""
        key = f"external:{record.path}:{record.sha256}"
        if key not in self._checked:
            path = inside(self.models_dir, str(record.path))
            self._checked[key] = format_named(record.format).external_problem(
                path, self.models_dir, record.external_data
            )
        return self._checked[key]

    def variant_problem(self, record: ExportRecord) -> str | None:
        """Why a precision variant cannot be trusted: failed export, missing or changed file or weights."""
        if not record.ok:
            return f"export failed: {record.error}"
        return self._check("artifact", record.path, record.sha256) or self._check(
            "weights", record.weights, record.weights_sha256
        )

    def variant_path(self, record: ExportRecord) -> Path:
        problem = self.variant_problem(record)
        if problem:
            raise ArtifactProblem(problem)
        return inside(self.models_dir, record.path or "")

    def eager_module(self) -> nn.Module:
        """The exact module that was exported, rebuilt once from spec (or the user's source), seed and
        the checked weights."""
        if self._eager is None:
            record = self.reference
            if record is None:
                raise ArtifactProblem(f"'{self.name}' has no successful export in {self.models_dir}")
            problem = self._check("weights", record.weights, record.weights_sha256)
            if problem:
                raise ArtifactProblem(problem)
            weights = inside(self.models_dir, record.weights or "")
            try:
                if record.import_path and record.object_name:
                    self.check_source()
                    user = UserModelRef(record.import_path, record.object_name)
                    module = rebuild_user_model(user, record.source_sha256, weights, self._rerun_hint(user))
                    self._eager = with_dtype(module, record.dtype)
                else:
                    self._eager = rebuild_model(record.spec, record.sample_shape, record.seed, weights, record.dtype)
            except PoolkitError as exc:
                if record.import_path:
                    raise  # a user model's own one-line error (changed source, import error) says it all
                raise ArtifactProblem(f"cannot rebuild '{self.name}' from its manifest entry: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - the hash matched, yet torch cannot use the file
                raise ArtifactProblem(f"cannot load the weights {weights}: {one_line(exc)}") from None
        return self._eager

    @property
    def reopen_name(self) -> str:
        """What reopens this model elsewhere (a bench worker) with the same trust: PATH.py:NAME for a
        model of your own that was named on the command line, else the artifact name."""
        record = self.reference
        source = (record.import_path, record.object_name) if record is not None else (None, None)
        return f"{source[0]}:{source[1]}" if source in self.trusted_sources else self.name

    def _rerun_hint(self, user: Any) -> str:
        return f": poolkit export --model {user.text} --out {self.models_dir}"

    def check_source(self) -> None:
        """A user's model runs its own code when rebuilt: it must be named on the command line (the
        manifest alone is not trusted), and its .py file must not have changed since export (exit 2)."""
        record = self.reference
        if record is not None and record.import_path and record.object_name:
            user = UserModelRef(record.import_path, record.object_name)
            if (user.import_path, user.object_name) not in self.trusted_sources:
                raise DataError(
                    f"'{self.name}' is a model of your own ({user.text}): rebuilding it runs that code, so poolkit "
                    f"does so only when you name it: add --model {user.text}"
                )
            if user.is_file and not Path(user.import_path).is_absolute():
                raise DataError(f"manifest entry '{self.name}': import path {user.import_path!r} is not absolute")
            check_source_unchanged(user, record.source_sha256, self._rerun_hint(user))

    def source(self, runtime: str, precision: str = "fp32") -> Any:
        """What `runtime` is opened on (in `precision`): the checked file it reads, or the rebuilt module
        (under torch.autocast for an autocast precision)."""
        problem = self.problem(runtime, precision)
        if problem:
            raise ArtifactProblem(problem)
        if runtime_class(runtime).reads == "module":
            module = self.eager_module()
            return autocast_variant(module, AUTOCAST[precision]) if precision in AUTOCAST else module
        record = self.record_for(runtime, precision)
        assert record is not None and record.path  # problem() said so
        return inside(self.models_dir, record.path)

    def open(self, runtime: str, device: str, threads: int | None = None) -> Runtime:
        """The runtime on this model's checked artifact; a file that passed its hash check but that the
        runtime cannot load (written by another tool version, or crafted) is an ArtifactProblem."""
        source = self.source(runtime)
        try:
            opened = open_runtime(runtime, source, device, threads)
        except PoolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch and ONNX Runtime raise many types
            what = source if isinstance(source, Path) else f"the rebuilt '{self.name}'"
            raise ArtifactProblem(f"{runtime} cannot load {what}: {one_line(exc)}") from None
        return ExtraInputs(opened, self.feed) if self.feed.extra_shapes else opened

    @property
    def feed(self) -> Feed:
        """How every runtime of this model is fed one array (the batch, plus seeded extras for several inputs)."""
        if self._feed is None:
            record = self.reference
            several = record is not None and len(record.sample_shapes) > 1
            self._feed = Feed(record.sample_shapes[1:] if record and several else [], record.seed if record else 0)
        return self._feed


def open_artifacts(
    models_dir: Path, names: list[str] | None = None, trust: list[str] | None = None
) -> list[ModelArtifacts]:
    """The models of a manifest (all, or those named by zoo name, artifact name, spec string or
    PATH.py:NAME). Models of your own named in `names` or `trust` may run their code when rebuilt."""
    models_dir = Path(models_dir)
    records = load_manifest(models_dir, required=True)
    by_model: dict[str, dict[str, ExportRecord]] = {}
    variants: dict[str, list[ExportRecord]] = {}
    for r in records:  # paths were checked as the manifest was read, before any file is
        if r.precision != "fp32":  # fp16/bf16/int8 files beside the artifact: verify judges them on their own
            variants.setdefault(r.name, []).append(r)
            by_model.setdefault(r.name, {})
            continue
        by_model.setdefault(r.name, {})[r.format] = r
    if not by_model:
        raise DataError(f"{models_dir}/manifest.json lists no artifacts: run 'poolkit export' first")
    wanted = list(by_model) if not names else [_artifact_name(n, by_model, models_dir) for n in names]
    _refuse_broken(wanted, by_model, every=not names)
    trusted = frozenset(_named_sources([*(names or []), *(trust or [])]))
    models = [ModelArtifacts(n, models_dir, by_model[n], trusted, variants.get(n, [])) for n in dict.fromkeys(wanted)]
    for model in models:
        model.check_source()
    return models


def _refuse_broken(wanted: list[str], by_model: dict[str, dict[str, ExportRecord]], every: bool) -> None:
    """A model asked for whose every entry is malformed is a one-line DataError; one malformed entry
    among good ones is only that artifact's failure (its rows say why), never the folder's."""
    broken = [n for n in wanted if all(r.raw is not None for r in by_model[n].values())]
    if broken and (not every or len(broken) == len(wanted)):
        raise DataError(str(next(iter(by_model[broken[0]].values())).error))


def _named_sources(names: list[str]) -> list[tuple[str, str]]:
    """(import path, name) of the models of your own named on the command line: the ones trusted to run."""
    found = []
    for text in names:
        try:
            ref = resolve_model(text)
        except PoolkitError:
            continue
        if ref.user is not None:
            found.append((ref.user.import_path, ref.user.object_name))
    return found


def _artifact_name(name: str, known: dict[str, Any], models_dir: Path) -> str:
    if name in known:
        return name

    try:
        resolved = resolve_model(name).name
    except PoolkitError:
        resolved = None
    if resolved not in known:
        raise DataError(f"no artifact named '{name}' in {models_dir}/manifest.json (has: {', '.join(sorted(known))})")
    return resolved
