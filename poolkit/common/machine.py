"""Facts about this process's machine that several layers record: usable cores, library versions.

One place so the sweep's worker check, the export manifest and bench's environment agree on what a
"version" and a "core" mean.
"""

from __future__ import annotations

import os
import platform


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (else what platform knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    """The versions a verdict depends on; every worker (local or Dask) must match them.

    torch and onnx are imported here, not at module level: `poolkit --help` must stay instant.
    """
    import onnx
    import onnxruntime
    import torch

    import poolkit

    return {
        "poolkit": poolkit.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
