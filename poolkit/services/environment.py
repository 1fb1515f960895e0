"""The machine a result was measured on, and its state around a run: every report carries both.

A benchmark on a shared machine is only as good as the machine was quiet. We record the CPU model,
the frequency governor and clock where Linux exposes them (a VM often does not: then we say so),
and the load average before and after the run. A 1-minute load average above the number of
threads the run itself used means another process competed for the cores: the report then
carries a warning instead of pretending the figures are clean (pyperf warns the same way).
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import onnxruntime as ort
import torch

from poolkit.common.machine import cpu_model, library_versions, usable_cores


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def cpu_frequency() -> dict[str, Any]:
    """Governor and clocks of CPU 0 where readable (cpufreq sysfs), else the MHz /proc/cpuinfo reports."""
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    governor = _read(base + "scaling_governor")
    cur = _read(base + "scaling_cur_freq")
    high = _read(base + "scaling_max_freq")
    mhz = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            mhz = next((float(ln.split(":", 1)[1]) for ln in fh if ln.startswith("cpu MHz")), None)
    except (OSError, ValueError):
        pass
    return {
        "governor": governor or "not exposed (no cpufreq in sysfs: a VM, or the host controls the clock)",
        "cur_mhz": int(cur) / 1000 if cur and cur.isdigit() else mhz,
        "max_mhz": int(high) / 1000 if high and high.isdigit() else None,
    }


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def load_warning(before: Any, after: Any, threads: int, cores: int) -> str | None:
    """A warning when the 1-minute load average says something beside this run wanted the CPU.

    Before the run nothing of ours runs: a load above 1 means a core was busy elsewhere. After it,
    the run itself accounts for about `threads` runnable threads (one runtime is timed at a time):
    a load above that by more than half a core means a competitor.
    """
    busy_before = before is not None and before[0] > 1.0
    busy_after = after is not None and after[0] > min(threads, cores) + 0.5
    if not (busy_before or busy_after):
        return None
    seen = ", ".join(f"{label} {x[0]:.2f}" for label, x in (("before", before), ("after", after)) if x)
    return (
        f"1-minute load average {seen} on {cores} cores, {threads} timed threads: another process competed for "
        "the CPU during this run; figures are pessimistic and noisier than on a quiet machine"
    )


def peak_bandwidth_gb_s(props: Any) -> float | None:
    """A GPU's theoretical memory bandwidth from torch's device properties (double data rate).

    `memory_clock_rate` is in kHz and `memory_bus_width` in bits (cudaDeviceProp); e.g. an H100 SXM:
    2 x 2,619 MHz x 5,120 bit / 8 = 3,352 GB/s.
    """
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def machine_state() -> dict[str, Any]:
    """What can change between runs on the same machine: clocks and load (taken before and after a run)."""
    return {"load_average": load_average(), **cpu_frequency()}


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_frequency": cpu_frequency(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_usable": usable_cores(),
        **library_versions(),
        "onnxruntime_providers_installed": ort.get_available_providers(),
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": None,
        "gpu_driver": None,
        "cudnn": None,
        "gpu_peak_gb_per_s": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpu_driver"] = _driver_version()
        info["gpu_peak_gb_per_s"] = peak_bandwidth_gb_s(torch.cuda.get_device_properties(0))
    return info


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None
