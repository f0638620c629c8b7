"""The model server: exported ONNX models behind a micro-batching HTTP API.

``exporting`` bakes a Hugging Face model into a self-describing directory (``manifests``);
``sessions`` loads one into ONNX Runtime; ``tasks`` turns logits into results; ``batching``
coalesces concurrent requests; ``app`` is the HTTP API; ``offline`` holds the small models
served when no exported directory is given.
"""
