"""`poolkit verify`: every artifact against eager PyTorch on the same inputs.

Public: `verify(...)` (and `run_verify`, what the command does) returning a `VerifyReport` of
`VerifyRow`s. Input sets are in `inputs`, wrong variants in `sensitivity`, tolerance guidance in
`tolerance`, failure heatmaps in `heatmap`, the tutorials' worked examples in `examples`.
"""

from poolkit.verify.report import VerifyOptions, VerifyReport, VerifyRow
from poolkit.verify.run import run_verify, verify

__all__ = ["VerifyOptions", "VerifyReport", "VerifyRow", "run_verify", "verify"]
