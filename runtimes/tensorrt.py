"""ONNX files on ONNX Runtime's TensorRT execution provider (CUDA only), with the same IO binding."""

from __future__ import annotations

from typing import ClassVar

from poolkit.runtimes.onnxruntime import OnnxRuntime


class TensorRTRuntime(OnnxRuntime):
    name = "tensorrt"
    devices = ("cuda",)
    has_layer_outputs = False
    provider_name: ClassVar[str | None] = "TensorrtExecutionProvider"
