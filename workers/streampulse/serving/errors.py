"""Errors of the model server, under the package's exception tree.

StreamPulseError
├── RequestRejected          a request the server will not run; becomes a 4xx or 503 answer
│   ├── BadRequest           malformed body, wrong types, unknown model, input over a limit
│   └── Overloaded           the queue is full; the answer carries Retry-After
└── InfrastructureError
    ├── ModelLoadError       a model directory is missing, incomplete or fails its checksums
    ├── InferenceError       ONNX Runtime failed on a batch
    └── ExportError          a model could not be exported, or failed its parity check
"""

from __future__ import annotations

from streampulse.errors import InfrastructureError, StreamPulseError


class RequestRejected(StreamPulseError):
    """A request that is answered with an error status instead of results."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadRequest(RequestRejected):
    """The request itself is wrong; ``status`` says how (400, 404, 413)."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Overloaded(RequestRejected):
    """More texts are waiting than the queue holds; retry after ``retry_after_s`` seconds."""

    status = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelLoadError(InfrastructureError):
    """A model directory cannot be served."""


class InferenceError(InfrastructureError):
    """ONNX Runtime failed on a batch; every request in it gets a 500."""


class ExportError(InfrastructureError):
    """A model could not be exported, or its ONNX outputs disagree with PyTorch."""
