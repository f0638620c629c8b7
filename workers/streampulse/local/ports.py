"""Free TCP ports for the processes the local stack and the tests start.

A port handed out by binding port 0 comes from the kernel's ephemeral range, and the same
range serves every later bind to port 0 and every outgoing connection's local end. Between
the moment such a port is chosen and the moment its process binds it, a JVM's blob server,
an RPC endpoint or a client connection can take it, and the process then fails to start
("Address already in use"). Ports here are chosen below that range, which the kernel never
hands out by itself, and never twice in one process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # above the well-known and most registered service ports
_TRIES = 200

_given: set[int] = set()
_lock = threading.Lock()
_random = random.SystemRandom()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports bound to 0 and for outgoing connections."""
    try:
        low, high = _EPHEMERAL_RANGE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the ephemeral range and
    not handed out before by this process."""
    low, _ = ephemeral_range()
    with _lock:
        if low - _LOWEST >= 1000:
            for _ in range(_TRIES):
                port = _random.randrange(_LOWEST, low)
                if port not in _given and _bindable(port):
                    _given.add(port)
                    return port
        port = _kernel_port()  # a narrow or exhausted range: the kernel's choice
        _given.add(port)
        return port
