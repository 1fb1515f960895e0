"""`poolkit show`: what each module does to CIFAR10 images, as TensorBoard runs and PNG grids.

Public: `show_models(...)` returning a `ShowRun` of `ShowResult`s.
"""

from poolkit.show.run import ShowOptions, ShowResult, ShowRun, show_models

__all__ = ["ShowOptions", "ShowResult", "ShowRun", "show_models"]
