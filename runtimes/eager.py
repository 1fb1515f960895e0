"""Eager PyTorch: the reference every artifact is compared with, rebuilt from spec + saved weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimes.base import Artifact, require_torch_cuda, set_torch_threads

if TYPE_CHECKING:
    import numpy as np
    from torch import nn


def rebuild_eager(artifact: Artifact) -> nn.Module:
    """The exact module that was exported: same spec, weights loaded from the saved file."""
    import torch

    from exporter.build import build_model
    from exporter.spec import parse_spec

    record = artifact.record
    model = build_model(parse_spec(record.spec), record.sample_shape, seed=record.seed)
    if record.weights:
        state = torch.load(artifact.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


class TorchModuleRuntime:
    """Shared by eager and TorchScript: both are torch modules called under inference_mode."""

    name = "torch"

    def __init__(self, module: Any, device: str, threads: int | None) -> None:
        import torch

        if device == "cuda":
            require_torch_cuda()
            # Full fp32 on CUDA, as on the CPU: TF32 would change the numbers verify compares.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.device = device
        self.threads = set_torch_threads(threads)
        self.provider = f"torch-{device}"
        self._torch = torch
        self.module = module.to(device) if hasattr(module, "to") else module

    def prepare(self, batch: np.ndarray) -> Any:
        return self._torch.from_numpy(batch).to(self.device)

    def infer(self, prepared: Any) -> Any:
        with self._torch.inference_mode():
            out = self.module(prepared)
        if self.device == "cuda":
            self._torch.cuda.synchronize()
        return out

    def to_numpy(self, outputs: Any) -> list[np.ndarray]:
        outs = outputs if isinstance(outputs, tuple) else (outputs,)
        return [o.detach().cpu().numpy() for o in outs]

    def close(self) -> None:
        self.module = None


class EagerRuntime(TorchModuleRuntime):
    name = "eager"

    def __init__(self, artifact: Artifact, device: str, threads: int | None = None) -> None:
        super().__init__(rebuild_eager(artifact), device, threads)


def module_layer_outputs(module: Any, batch: np.ndarray) -> list[tuple[str, list[np.ndarray]]]:
    """Each top-level layer's output (conv1, maxpool1, ...), run in order on the CPU."""
    import torch

    results = []
    x: Any = torch.from_numpy(batch)
    with torch.inference_mode():
        for name, layer in module.named_children():
            x = layer(x)
            outs = x if isinstance(x, tuple) else (x,)
            results.append((name, [o.detach().cpu().numpy() for o in outs]))
    return results


def eager_layer_outputs(artifact: Artifact, batch: np.ndarray) -> list[tuple[str, list[np.ndarray]]]:
    return module_layer_outputs(rebuild_eager(artifact), batch)
