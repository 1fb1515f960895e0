"""PNG files as data URIs, so the page is one file: only files inside the results folder, only PNGs.

A results JSON names its pictures by path (verify's heatmaps); a crafted file could name any file
on the machine, so a path is embedded only when it resolves inside the results folder and starts
with the PNG signature. Large pictures (show's grids are ~400 KB each at 1200 px) are scaled to
`MAX_WIDTH` and re-encoded: the page stays a few MB. That dominates the report's time, so the
pictures are prepared in a thread pool (Pillow releases the GIL while it decodes, resizes and
compresses) while the page renders.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape
from PIL import Image, UnidentifiedImageError

from poolkit.common.machine import usable_cores

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_WIDTH = 800  # px: wider than the page's text column on a laptop, still legible when a phone zooms
KEEP_BYTES = 200_000  # a PNG this small and no wider than MAX_WIDTH is embedded as it is
MAX_FILE_BYTES = 32 << 20
MAX_PIXELS = 40_000_000  # a decompression bomb is refused, not decoded


@dataclass
class Picture:
    """A picture ready for an <img>: its data URI, or why it is not shown."""

    path: str
    uri: str | None
    problem: str | None = None


def find_inside(root: Path, name: str) -> Path | None:
    """`name` as written in a results file: relative to the working folder, or to the results folder
    (or its parent, where poolkit writes `results/...`), or any tail of it inside the results folder
    (a run moved, or read from another folder: `results/runs/ID/verify_failures/x.png` is found as
    `verify_failures/x.png` in the run's folder); None when it leaves the results folder."""
    root = Path(root).resolve()
    raw = Path(name)
    tails = [Path(*raw.parts[i:]) for i in range(1, len(raw.parts))] if not raw.is_absolute() else []
    for candidate in (raw, root / raw, root.parent / raw, *(root / t for t in tails)):
        resolved = candidate.resolve()
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved
    return None


def picture(root: Path, name: str) -> Picture:
    path = find_inside(root, name) if "\x00" not in name else None
    if path is None:
        return Picture(name, None, f"{name} is not a file inside {root}: not embedded")
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else b""
        if not data.startswith(PNG_SIGNATURE):
            return Picture(name, None, f"{name} is not a PNG (or over {MAX_FILE_BYTES >> 20} MiB): not embedded")
        return Picture(name, "data:image/png;base64," + base64.b64encode(_fit(data)).decode("ascii"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        return Picture(name, None, f"{name} cannot be read as a PNG ({type(exc).__name__}): not embedded")


def _fit(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError("too many pixels")
        if len(data) <= KEEP_BYTES and im.width <= MAX_WIDTH:
            return data
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:  # matplotlib's figures are opaque: drop the channel
            flat = rgba.convert("RGB")
        else:  # alpha over white, the page's background
            flat = Image.new("RGB", im.size, "white")
            flat.paste(rgba, mask=rgba.getchannel("A"))
        if flat.width > MAX_WIDTH:
            flat = flat.resize(
                (MAX_WIDTH, max(1, round(flat.height * MAX_WIDTH / flat.width))), Image.Resampling.BILINEAR
            )
        out = io.BytesIO()
        flat.save(out, format="PNG", compress_level=3)
        return out.getvalue() if out.tell() < len(data) else data


class Pictures:
    """Pictures prepared in a thread pool while the page renders.

    The template writes a token per picture (an HTML comment: escaped text from a results file can
    never produce one); `fill` waits for the pictures and puts each one's <img>, or the reason it
    is not shown, in its place. Scaling pictures and rendering the page then overlap.
    """

    def __init__(self, wanted: Sequence[tuple[Path, str]]) -> None:
        """`wanted`: (folder, name) per picture, each embedded only from inside its own folder (a run's)."""
        keys = list(dict.fromkeys((Path(root), name) for root, name in wanted))
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(len(keys), usable_cores())))
        self._futures: dict[tuple[Path, str], Future[Picture]] = {k: self._pool.submit(picture, *k) for k in keys}
        self._alts: list[tuple[tuple[Path, str], str]] = []

    def tag(self, root: Path, name: str, alt: str) -> Markup:
        """The token the template writes where the picture goes."""
        self._alts.append(((Path(root), name), alt))
        return Markup(f"<!--poolkit-picture:{len(self._alts) - 1}-->")

    def close(self) -> None:
        """Stop the pool without the page (its threads are joined: none outlives the command)."""
        self._pool.shutdown(cancel_futures=True)

    def fill(self, html: str) -> tuple[str, list[str]]:
        """The page with every picture in place, and the notes about those not shown."""
        try:
            done = {key: future.result() for key, future in self._futures.items()}
        finally:
            self._pool.shutdown(cancel_futures=True)
        notes = [p.problem for p in done.values() if p.problem]

        def one(match: re.Match[str]) -> str:
            key, alt = self._alts[int(match.group(1))]
            pic = done[key]
            if pic.uri is None:
                return f'<p class="neutral">{escape(pic.problem)}</p>'
            return f'<img src="{pic.uri}" alt="{escape(alt)}">'

        return re.sub(r"<!--poolkit-picture:(\d+)-->", one, html), notes
