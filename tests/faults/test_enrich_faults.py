"""Enrich under faults (docs/reliability.md, "Enrich"), with the real engines: a KRaft broker,
the model server serving tiny exported models, enrich workers as processes.

Item 3: the worker SIGKILLed three times at random points (seeded, the seed printed and
recorded) and once between writing a cycle and committing it; read with read_committed, every
post appears exactly once (exactly_once) or at least once (at_least_once, duplicates counted).

Item 4: the model server behind a fault-injecting TCP proxy (``tests.harness.tcp_proxy``): slow,
hung, resetting, refusing or partitioned. Every post ends enriched or dead-lettered as unscored
(none lost), the worker's memory stays bounded, the breaker's state shows in its metric, SIGTERM
exits within the worker's shutdown budget, and the watchdog (``settle``) fails on any hang.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from streampulse.enrich.breaker import BreakerState
from streampulse.local.ports import free_port
from streampulse.settings import KafkaSettings, Settings
from tests.faults.enrich_runs import (
    Died,
    Hung,
    Outcome,
    Tail,
    Watermarks,
    Workers,
    enrich_env,
    final_outcome,
    settle,
    uncommitted_records,
    wait_until,
    write_backlog,
    write_raw_stream,
)
from tests.faults.gateway_runs import GatewayRun, metric, start_gateway_run
from tests.faults.matrix import Process, Scenario
from tests.harness.processes import ManagedProcess
from tests.harness.tcp_proxy import Mode
from tests.harness.tiny_models import build_tiny_models

pytestmark = pytest.mark.faults

SEED = int(
    os.environ.get("STREAMPULSE_TEST_FAULT_SEED") or random.SystemRandom().randrange(1 << 31)
)


@pytest.fixture(scope="module")
def model_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The real model server with the tiny models; yields its port."""
    tiny = build_tiny_models(settings.cache_dir)
    port = free_port()
    env = {
        "STREAMPULSE_SERVING__MODEL_DIRS": orjson.dumps([str(d) for d in tiny.dirs]).decode(),
        "STREAMPULSE_SERVING__PORT": str(port),
    }
    log = tmp_path_factory.mktemp("model-server") / "serve-models.log"
    server = ManagedProcess.streampulse(["serve-models"], env, log)
    try:
        server.wait_for_output(r"ready: ner, sentiment, toxicity", timeout_s=300)
        yield port
    finally:
        server.stop()


def _record(scenario: Scenario, outcome: Outcome) -> Scenario:
    scenario.events_sent = len(outcome.posts)
    scenario.delivered = outcome.delivered
    scenario.dead_lettered = outcome.dead_lettered
    scenario.duplicated = outcome.duplicated
    scenario.lost = outcome.lost
    scenario.write()
    return scenario


def _stop(worker: ManagedProcess, timeout_s: float = 60.0) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the exit took."""
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(timeout_s=timeout_s)
    return code, time.monotonic() - sent


# -- item 3: exactly-once under crashes ---------------------------------------------------------


def _reached(marks: Watermarks, worker: ManagedProcess, target: int) -> bool:
    return marks.total() >= target or worker.process.poll() is not None


@pytest.mark.parametrize("kill", ["random", "between_produce_and_commit"])
@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_worker_killed_and_restarted(
    delivery: str,
    kill: str,
    model_server: int,
    kafka_settings: KafkaSettings,
    jetstream_data_dir: Path,
    tmp_path: Path,
) -> None:
    exactly_once = delivery == "exactly_once"
    title = (
        f"worker SIGKILLed 3x at random points, {delivery}"
        if kill == "random"
        else f"SIGKILL between produce and commit, {delivery}"
    )
    posts = write_raw_stream(kafka_settings, jetstream_data_dir, 8000)
    workers = Workers(
        enrich_env(
            kafka_settings, f"http://127.0.0.1:{model_server}", delivery=delivery, batch_posts=48
        ),
        tmp_path,
    )
    tail = Tail(kafka_settings, posts)
    marks = Watermarks(kafka_settings)
    started = time.monotonic()
    notes: list[str] = []
    extra: dict[str, float | int | str] = {}
    try:
        if kill == "random":
            rng = random.Random(f"{SEED}-{delivery}")
            print(f"fault seed {SEED} (STREAMPULSE_TEST_FAULT_SEED={SEED} replays it)")
            extra["seed"] = SEED
            for n in range(3):
                worker = workers.start()
                target = marks.total() + rng.randint(20, 250)
                wait_until(
                    functools.partial(_reached, marks, worker, target),
                    f"the enriched topic reaching {target} records (kill {n + 1})",
                    timeout_s=240,
                    every_s=0.02,
                )
                assert worker.process.poll() is None, worker.output()[-3000:]
                workers.kill(worker)
                notes.append(f"kill at {marks.total()}")
            notes.append(f"seed {SEED}")
        else:
            worker = workers.start(STREAMPULSE_ENRICH__CRASH_BEFORE_COMMIT_CYCLE="5")
            code = worker.wait(timeout_s=240)
            assert code == -signal.SIGKILL, worker.output()[-3000:]
            assert "fault injection: SIGKILL in cycle 5" in worker.output()
        final = workers.start()
        settle(tail, final, deadline_s=420, stall_s=120)
        code, _ = _stop(final)
        assert code == 0, final.output()[-3000:]
        outcome = final_outcome(kafka_settings, posts)
        extra["uncommitted_records"] = uncommitted_records(
            kafka_settings, kafka_settings.enriched_topic
        )
        extra["seconds"] = round(time.monotonic() - started, 1)
        _record(
            Scenario(
                item=3,
                stage="enrich",
                fault=title,
                exactly_once=exactly_once,
                notes="; ".join([*notes, f"restarted {len(workers.started) - 1}x"]),
                extra=extra,
            ),
            outcome,
        )
    except (Hung, Died) as exc:
        process: Process = "hung" if isinstance(exc, Hung) else "crashed"
        Scenario(
            item=3,
            stage="enrich",
            fault=title,
            process=process,
            exactly_once=exactly_once,
            notes=str(exc)[:300],
        ).write()
        raise
    finally:
        marks.close()
        tail.close()
        workers.stop_all()

    assert outcome.lost == 0, f"{outcome.lost} posts lost"
    assert outcome.delivered == len(posts)
    assert outcome.dead_lettered == 0
    if exactly_once:
        assert outcome.duplicated == 0, f"{outcome.duplicated} duplicates under exactly_once"
    if kill != "random":
        if exactly_once:  # the crashed cycle's records are in the log, never visible
            assert int(extra["uncommitted_records"]) > 0
        else:  # the crashed cycle was written and read again
            assert outcome.duplicated > 0


# -- item 4: a slow, hung, resetting, refusing or partitioned model server ----------------------


@pytest.fixture
def gateway_run(
    model_server: int, kafka_settings: KafkaSettings, jetstream_data_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., GatewayRun]]:
    made: list[GatewayRun] = []

    def make(**enrich: object) -> GatewayRun:
        run = start_gateway_run(
            model_server, kafka_settings, jetstream_data_dir, tmp_path, **enrich
        )
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


def _gateway_scenario(
    run: GatewayRun, fault: str, outcome: Outcome, base_mb: float, **extra: float | int | str
) -> Scenario:
    seen = run.breaker.values
    return _record(
        Scenario(
            item=4,
            stage="enrich",
            fault=fault,
            notes=f"breaker max {max(seen, default=0):.0f}, RSS {base_mb:.0f} -> "
            f"peak {run.rss.peak_mb:.0f} MiB",
            extra={
                "rss_base_mb": round(base_mb, 1),
                "rss_peak_mb": round(run.rss.peak_mb, 1),
                "breaker_max": max(seen, default=0),
                **extra,
            },
        ),
        outcome,
    )


def _watched(run: GatewayRun, fault: str, body: Callable[[], object]) -> None:
    """Run ``body``; a hang or an unexpected exit is recorded as such before failing."""
    try:
        body()
    except (Hung, Died) as exc:
        process: Process = "hung" if isinstance(exc, Hung) else "crashed"
        Scenario(item=4, stage="enrich", fault=fault, process=process, notes=str(exc)[:300]).write()
        raise


HEALING = {
    Mode.BLACKHOLE: "model server hung (black-holed), healed in budget",
    Mode.REFUSE: "model server refusing connections, healed in budget",
}


@pytest.mark.parametrize("mode", list(HEALING))
def test_model_server_down_then_healed(mode: Mode, gateway_run: Callable[..., GatewayRun]) -> None:
    fault = HEALING[mode]
    run = gateway_run(retry_budget_s=90)
    base_mb = run.warm_up()
    down_at = time.monotonic()
    run.proxy.set_mode(mode)
    run.add_posts(2500, seed=2)
    backlog = 60_000 if mode is Mode.BLACKHOLE else 0
    backlog_bytes = write_backlog(run.kafka, run.data_dir, backlog)
    fault_peak_mb = 0.0
    down_s = 0.0

    def body() -> None:
        nonlocal fault_peak_mb, down_s
        run.until_probes_failed(2 if mode is Mode.BLACKHOLE else 6)
        fault_peak_mb = run.rss.peak_mb
        run.proxy.set_mode(Mode.PASS)
        down_s = time.monotonic() - down_at
        settle(run.tail, run.worker, deadline_s=300, stall_s=120)
        wait_until(lambda: run.breaker.last == BreakerState.CLOSED, "the breaker closed", 60)
        wait_until(lambda: run.paused.last == 0, "the partitions resumed", 60)

    _watched(run, fault, body)
    code, _ = _stop(run.worker)
    outcome = final_outcome(run.kafka, run.tail.outcome.posts)
    _gateway_scenario(
        run,
        fault,
        outcome,
        base_mb,
        down_s=round(down_s, 1),
        rss_fault_peak_mb=round(fault_peak_mb, 1),
        backlog_records=backlog,
        backlog_mb=round(backlog_bytes / (1 << 20), 1),
    )
    assert code == 0
    assert outcome.lost == 0
    assert outcome.dead_lettered == 0
    assert outcome.delivered == len(outcome.posts)
    assert BreakerState.OPEN in run.breaker.values
    assert 1 in run.paused.values  # no new batch while the stuck one waited
    assert down_s < 90  # healed within the retry budget
    # paused while the breaker is open: a backlog behind the stuck cycle is not prefetched
    assert fault_peak_mb - base_mb < 32, (base_mb, fault_peak_mb)
    assert run.rss.peak_mb < 512


DEGRADED = {
    Mode.LATENCY: "model server 300 ms slower on every answer",
    Mode.RESET: "model server resetting 30% of requests (TCP RST)",
}


@pytest.mark.parametrize("mode", list(DEGRADED))
def test_model_server_slow_or_resetting(mode: Mode, gateway_run: Callable[..., GatewayRun]) -> None:
    fault = DEGRADED[mode]
    run = gateway_run()
    base_mb = run.warm_up()
    run.proxy.set_mode(mode, latency_s=0.3, reset_ratio=0.3, seed=SEED)
    run.add_posts(2500, seed=2)
    _watched(run, fault, lambda: settle(run.tail, run.worker, deadline_s=300, stall_s=120))
    retries = metric(run.metrics_port, "streampulse_enrich_retries_total")
    code, _ = _stop(run.worker)
    outcome = final_outcome(run.kafka, run.tail.outcome.posts)
    _gateway_scenario(run, fault, outcome, base_mb, retries=retries, resets=run.proxy.stats.resets)
    assert code == 0
    assert outcome.lost == 0
    assert outcome.dead_lettered == 0
    assert outcome.delivered == len(outcome.posts)
    if mode is Mode.RESET:
        assert run.proxy.stats.resets > 0
        assert retries > 0
    else:
        assert max(run.breaker.values, default=0) == BreakerState.CLOSED


FOR_GOOD = {
    Mode.PARTITION: "model server partitioned past the retry budget",
    Mode.BLACKHOLE: "model server hung (black-holed) past retry budget",
}


@pytest.mark.parametrize("mode", list(FOR_GOOD))
def test_model_server_down_for_good(mode: Mode, gateway_run: Callable[..., GatewayRun]) -> None:
    fault = FOR_GOOD[mode]
    run = gateway_run(retry_budget_s=4, request_timeout_s=1, batch_posts=1000)
    base_mb = run.warm_up()
    enriched_before = set(run.tail.outcome.posts)
    run.proxy.set_mode(mode)
    run.add_posts(2500, seed=2)
    _watched(run, fault, lambda: settle(run.tail, run.worker, deadline_s=300, stall_s=90))
    code, _ = _stop(run.worker)
    outcome = final_outcome(run.kafka, run.tail.outcome.posts)
    _gateway_scenario(run, fault, outcome, base_mb)
    assert code == 0
    assert outcome.lost == 0
    assert outcome.delivered == len(enriched_before)
    unscored = outcome.posts - enriched_before
    assert outcome.dead_lettered == len(unscored) > 0
    letters = [outcome.dead[event_id] for event_id in unscored]
    assert {letter["reason"] for letter in letters} == {"unscored"}
    assert all("unavailable" in letter["error"] for letter in letters), letters[0]
    assert BreakerState.OPEN in run.breaker.values
    assert run.rss.peak_mb - base_mb < 32


def test_sigterm_while_the_model_server_hangs(gateway_run: Callable[..., GatewayRun]) -> None:
    fault = "SIGTERM while the model server is hung (black-holed)"
    budget_s = 5.0
    run = gateway_run(request_timeout_s=30, retry_budget_s=120, shutdown_timeout_s=budget_s)
    base_mb = run.warm_up()
    run.proxy.set_mode(Mode.BLACKHOLE)
    run.add_posts(2500, seed=2)
    wait_until(lambda: run.proxy.stats.dropped_bytes > 0, "requests swallowed", 60)
    code, exit_s = _stop(run.worker, timeout_s=150)
    stopped = run.worker.output()
    run.proxy.set_mode(Mode.PASS)
    run.worker = run.workers.start()
    _watched(run, fault, lambda: settle(run.tail, run.worker, deadline_s=300, stall_s=120))
    restarted_code, _ = _stop(run.worker)
    outcome = final_outcome(run.kafka, run.tail.outcome.posts)
    scenario = _gateway_scenario(run, fault, outcome, base_mb, exit_s=round(exit_s, 1))
    scenario.process = "exited" if code == 0 and exit_s <= budget_s + 10 else "hung"
    scenario.notes += f"; exit {code} {exit_s:.1f} s after SIGTERM (budget {budget_s:.0f} s)"
    scenario.write()
    assert code == 0, stopped[-3000:]
    assert exit_s <= budget_s + 10, exit_s
    assert "abandoned before writing anything" in stopped
    assert restarted_code == 0
    assert outcome.lost == 0
    assert outcome.dead_lettered == 0
    assert outcome.delivered == len(outcome.posts)
