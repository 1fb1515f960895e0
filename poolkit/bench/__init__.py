"""`poolkit bench`: latency of each runtime on each device, in isolated workers, with raw samples.

Public: `run_bench(...)` returning a `BenchReport` of `Measurement`s (`run_bench_command` is what
the command does: export if needed, run, write JSON/CSV/PNG). Statistics are in `stats`, FLOPs and
bytes in `cost`, the per-runtime timer in `timer`, its worker process in `worker`, files in `report`.
"""

from poolkit.bench.run import BenchReport, BenchRun, BenchSettings, Measurement, run_bench, run_bench_command

__all__ = ["BenchReport", "BenchRun", "BenchSettings", "Measurement", "run_bench", "run_bench_command"]
