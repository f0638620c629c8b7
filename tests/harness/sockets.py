"""Listening TCP sockets of a process tree, read from ``/proc`` (no tools needed)."""

from __future__ import annotations

import ipaddress
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _decode(hex_address: str, v6: bool) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if v6:  # four little-endian 32-bit words
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        address = str(ipaddress.IPv6Address(raw))
        mapped = ipaddress.IPv6Address(raw).ipv4_mapped
        address = str(mapped) if mapped else address
    else:
        address = str(ipaddress.IPv4Address(raw[::-1]))
    return address, int(port, 16)


def _listening_inodes(pid: int) -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN:
                out[int(fields[9])] = _decode(fields[1], v6)
    return out


def listeners(root: int) -> list[Listener]:
    """Every listening TCP socket held by ``root``'s process tree."""
    found: list[Listener] = []
    for pid in process_tree(root):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
        except OSError:
            continue
        inodes = set()
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
        table = _listening_inodes(pid)
        for inode in inodes & set(table):
            address, port = table[inode]
            found.append(Listener(pid, command.decode(errors="replace"), address, port))
    return found
