"""The count an autoscaled model Deployment goes back to after a suspension, whatever happens
between the resume and the raise (a lost write, or an HPA setting its minimum first)."""

from __future__ import annotations

from typing import Any

import pytest

from streampulse_operator.manifests import render
from streampulse_operator.manifests.models import RESUME_REPLICAS
from streampulse_operator.reconciling import _remember_replicas, autoscaled_targets
from tests.unit.operator_unit.cases import CASES, OWNER, defaulted

pytestmark = pytest.mark.unit
KEY = "Deployment/demo-model-toxicity"


def manifests(suspend: bool) -> list[dict[str, Any]]:
    spec = dict(CASES["example"]) | {"suspend": suspend}
    spec["models"] = [dict(m) | {"minReplicas": 2, "maxReplicas": 6} for m in spec["models"]]
    return render(OWNER, defaulted(spec))


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if f"{o['kind']}/{o['metadata']['name']}" == KEY)


def live(replicas: int, remembered: int | None = None) -> dict[str, Any]:
    annotations = {} if remembered is None else {RESUME_REPLICAS: str(remembered)}
    return {"metadata": {"annotations": annotations}, "spec": {"replicas": replicas}}


def annotation(body: dict[str, Any]) -> str | None:
    return (body["metadata"].get("annotations") or {}).get(RESUME_REPLICAS)


def test_suspending_remembers_the_running_count_and_keeps_it_while_suspended() -> None:
    suspended = deployment(manifests(suspend=True))
    assert annotation(_remember_replicas(suspended, live(3), 0)) == "3"
    assert annotation(_remember_replicas(suspended, live(0, remembered=3), 0)) == "3"


@pytest.mark.parametrize(
    ("have", "carried"),
    [(0, "3"), (1, "3"), (2, "3"), (3, None), (5, None)],
    ids=["at zero", "defaulted to one", "HPA minimum first", "reached", "HPA went higher"],
)
def test_a_resumed_deployment_is_raised_to_its_count_before_the_suspension(
    have: int, carried: str | None
) -> None:
    running = manifests(suspend=False)
    targets = autoscaled_targets(running, {KEY: live(have, remembered=3)})
    assert targets[KEY] == 3
    assert annotation(_remember_replicas(deployment(running), live(have, 3), targets[KEY])) == (
        carried
    )


def test_the_count_is_held_within_the_autoscalers_bounds() -> None:
    running = manifests(suspend=False)
    assert autoscaled_targets(running, {KEY: live(0, remembered=9)})[KEY] == 6
    assert autoscaled_targets(running, {KEY: live(0, remembered=1)})[KEY] == 2
    assert autoscaled_targets(running, {KEY: None})[KEY] == 2
    # Reached within the bounds: the annotation goes, the HPA alone decides from then on.
    body = _remember_replicas(deployment(running), live(6, remembered=9), 6)
    assert annotation(body) is None
