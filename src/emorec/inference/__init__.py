"""Inference on ONNX Runtime: detector -> crops -> classifier. Never imports torch."""
