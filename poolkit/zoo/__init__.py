"""`poolkit zoo`: what each model is (its layers, parameters and output shapes) before anything is exported.

Public: `describe(...)` returning `ZooRow`s.
"""

from poolkit.zoo.info import ZooRow, describe

__all__ = ["ZooRow", "describe"]
