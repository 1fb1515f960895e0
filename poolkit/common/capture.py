"""Capture what libraries print (exporter progress lines, warnings, C++ logs) instead of showing it.

torch.onnx prints progress with `print`, torch.export logs through `logging`, and native code
writes straight to file descriptors 1 and 2: only redirecting the descriptors catches all three.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from poolkit.common.signals import signals_held


@dataclass
class Captured:
    text: str = ""
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Silence stdout/stderr (Python and native) and warnings; hand back what was said."""
    result = Captured()
    py_buf = io.StringIO()
    saved_fds = []
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in (1, 2):
            try:
                saved_fds.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:  # no real descriptor (some embedded consoles): Python-level capture only
                pass
        root = logging.getLogger()
        saved_disable = root.manager.disable
        logging.disable(logging.WARNING)
        try:
            with (
                warnings.catch_warnings(record=True) as caught,
                contextlib.redirect_stdout(py_buf),
                contextlib.redirect_stderr(py_buf),
            ):
                warnings.simplefilter("always")
                yield result
        finally:
            with signals_held():  # an interrupt here would leave fds 1 and 2 in the temp file, for good
                logging.disable(saved_disable)
                sys.stdout.flush()
                sys.stderr.flush()
                for fd, saved in saved_fds:
                    os.dup2(saved, fd)
                    os.close(saved)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
            result.text = py_buf.getvalue() + native
            result.warnings = [str(w.message) for w in caught]
