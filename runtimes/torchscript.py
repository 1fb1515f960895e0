"""TorchScript artifacts: `torch.jit.load`, then frozen and optimised for inference."""

from __future__ import annotations

import warnings

from runtimes.base import Artifact, require_torch_cuda
from runtimes.eager import TorchModuleRuntime


class TorchScriptRuntime(TorchModuleRuntime):
    name = "torchscript"

    def __init__(self, artifact: Artifact, device: str, threads: int | None = None) -> None:
        import torch

        if device == "cuda":
            require_torch_cuda()  # before torch.jit.load, whose own error would be a traceback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.14 deprecates torch.jit; export already said so once
            module = torch.jit.load(str(artifact.path), map_location=device).eval()
            # freeze inlines weights as constants: what a deployment runs, and what we should time.
            module = torch.jit.freeze(module)
        super().__init__(module, device, threads)
        self.provider = f"torchscript-frozen-{device}"


def torchscript_layer_outputs(artifact: Artifact, batch):  # -> list[tuple[str, list[np.ndarray]]]
    """Layer by layer through the artifact's own submodules (unfrozen, so they still exist)."""
    import torch

    from runtimes.eager import module_layer_outputs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(artifact.path), map_location="cpu").eval()
    return module_layer_outputs(module, batch)
