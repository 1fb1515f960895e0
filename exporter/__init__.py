"""Building Tudui-style modules from specs and exporting them to TorchScript and ONNX."""
