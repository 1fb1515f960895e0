"""`poolkit bench`: latency of each runtime on each device, in isolated workers, with raw samples.

Public: `run_bench(...)` returning a `BenchReport` of `Measurement`s (`run_bench_command` is what
the command does: export if needed, run, write JSON/CSV/PNG). The modules, leaf first:
`stats` (statistics), `cost` (FLOPs and bytes), `measurement` (the types and derived figures),
`loop` (the one timing loop), `timer` (one runtime's timing), `worker` (where it runs),
`scheduler` (interleaved rounds), `inputs` (what rows are fed), `report` (files, --baseline),
`run` (orchestration and the command around it), `selfcheck` (against tools poolkit did not write).
"""

from poolkit.bench.measurement import BenchReport, BenchSettings, Measurement
from poolkit.bench.run import BenchRun, run_bench, run_bench_command

__all__ = ["BenchReport", "BenchRun", "BenchSettings", "Measurement", "run_bench", "run_bench_command"]
