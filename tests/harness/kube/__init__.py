"""A real Kubernetes control plane for tests, built from the Go module proxy and run locally."""

from tests.harness.kube import versions
from tests.harness.kube.build import Binaries, BuildError, ensure_binaries
from tests.harness.kube.plane import ApiError, ControlPlane
from tests.harness.kube.process import StartupError, wait_until

__all__ = [
    "ApiError",
    "Binaries",
    "BuildError",
    "ControlPlane",
    "StartupError",
    "ensure_binaries",
    "versions",
    "wait_until",
]
