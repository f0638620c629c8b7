"""Fixtures of the fault matrix: each test records its counted outcome (``record``)."""

from __future__ import annotations

import pytest

from tests.faults.matrix import Scenario, SecurityCheck


@pytest.fixture
def record() -> type[Scenario]:
    """``record(item=1, stage="ingest", fault="...", ...).write()`` after the outcome is known."""
    return Scenario


@pytest.fixture
def security_check() -> type[SecurityCheck]:
    return SecurityCheck
