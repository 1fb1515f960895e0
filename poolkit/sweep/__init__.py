"""`poolkit sweep`: layer parameters × exporters × opsets × runtimes, one conformance cell each.

Public: `run_sweep_command(...)` returning a `SweepRun` (`run_sweep` runs a list of cells into
`CellResult`s). The grid is in `grid`, one cell in `cell`, where cells run in `worker` (local
processes) and `cluster` (Dask), who is to blame in `blame`, repro bundles in `bundle`, files in `report`.
"""

from poolkit.sweep.run import SweepRun, SweepSettings, run_sweep, run_sweep_command

__all__ = ["SweepRun", "SweepSettings", "run_sweep", "run_sweep_command"]
