"""Ports handed to the processes the stack starts lie outside the kernel's ephemeral range."""

from __future__ import annotations

from streampulse.local.ports import ephemeral_range, free_port


def test_ports_lie_below_the_range_the_kernel_hands_out() -> None:
    low, high = ephemeral_range()
    assert 1024 < low < high
    chosen = [free_port() for _ in range(50)]
    assert all(10_000 <= port < low for port in chosen), chosen


def test_a_port_is_never_handed_out_twice() -> None:
    chosen = [free_port() for _ in range(200)]
    assert len(set(chosen)) == len(chosen)
