"""ONNX files on ONNX Runtime's TensorRT execution provider (CUDA only), with the same IO binding."""

from __future__ import annotations

from typing import ClassVar

from poolkit.runtimes.onnxruntime import OnnxSession


class TensorRTRuntime(OnnxSession):
    """No layer outputs: an ONNX file's layers run on the CPU provider would not be what TensorRT ran."""

    name = "tensorrt"
    devices = ("cuda",)
    provider_name: ClassVar[str | None] = "TensorrtExecutionProvider"
