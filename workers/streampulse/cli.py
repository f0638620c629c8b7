"""The ``streampulse`` command: one entrypoint per process kind.

Each command builds the process's one ``Settings`` object, applies its flags on top, configures
logging, and hands the settings down. Nothing below this module reads the environment.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
import uvloop

from streampulse.enrich.worker import EnrichWorker
from streampulse.errors import InfrastructureError
from streampulse.health import Heartbeat, serve_health
from streampulse.ingest.worker import IngestWorker
from streampulse.local.kafka_broker import KafkaBroker, ensure_kafka
from streampulse.local.runs import RunRecord, alive, remove_record, stop_run
from streampulse.local.stack import run_stack
from streampulse.local.status import StatusBoard
from streampulse.local.trino import ensure_local_trino, trino_over_warehouse
from streampulse.logs import configure_logging
from streampulse.replay.server import run as run_replay
from streampulse.settings import Settings
from streampulse.telemetry import serve_metrics
from streampulse.tracing import (
    SERVICE_ENRICH,
    SERVICE_INGEST,
    SERVICE_MODEL_SERVER,
    RootSpans,
    tracing_for,
)

# A worker whose event loop has not run for this long is reported dead to the kubelet: well
# above any pause of a healthy loop (a Kafka flush, a slow batch), well below a hang.
HEARTBEAT_STALE_S = 30.0

app = typer.Typer(
    help="StreamPulse: real-time analytics of the Bluesky firehose.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # plain tracebacks: no locals (secrets) in logs
)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


# --- commands (each stage registers its command below) ---


@app.command("serve-models")
def serve_models(
    model_dir: Annotated[
        list[Path] | None,
        typer.Option(help="Exported model directory (repeatable); none: the offline defaults."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (0 picks a free one).")] = None,
) -> None:
    """Serve models over HTTP with dynamic micro-batching until SIGTERM."""
    from streampulse.serving.app import serve  # noqa: PLC0415 - the serving extra

    settings = _settings()
    updates: dict[str, object] = {}
    if model_dir:
        updates["model_dirs"] = tuple(model_dir)
    if port is not None:
        updates["port"] = port
    serve_metrics(settings.metrics_port, settings.bind_host)
    try:
        with tracing_for(settings.telemetry, SERVICE_MODEL_SERVER):
            serve(settings.serving.model_copy(update=updates))
    except InfrastructureError as exc:
        typer.echo(f"serve-models: {exc}", err=True)
        raise typer.Exit(1) from exc


models_app = typer.Typer(help="Model directories for the model server.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("export")
def export_models(  # noqa: PLR0917 - the signature is the command line
    source: Annotated[str, typer.Argument(help="Hugging Face model id or local directory.")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    name: Annotated[str, typer.Option(help="Model name in the API (toxicity, ner, ...).")],
    task: Annotated[
        str | None,
        typer.Option(
            help="multi_label_classification, single_label_classification or "
            "token_classification; default: from the model's config."
        ),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision (commit or tag).")] = None,
    max_length: Annotated[int, typer.Option(help="Tokens per text after truncation.")] = 128,
) -> None:
    """Export a model to ONNX, check parity, quantize to int8, write a model directory."""
    from streampulse.serving.exporting import export_from_cli  # noqa: PLC0415 - export extra

    _settings()
    try:
        summary = export_from_cli(
            source, out=out, name=name, task=task, revision=revision, max_length=max_length
        )
    except InfrastructureError as exc:
        typer.echo(f"models export: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(summary)


def _read_dictionary(settings: Settings) -> bytes | None:
    path = settings.jetstream.zstd_dictionary
    if not settings.jetstream.compress:
        return None
    if path is None or not path.is_file():
        raise typer.BadParameter(
            f"compression is on but the zstd dictionary {path} is missing: set "
            "STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY or STREAMPULSE_JETSTREAM__COMPRESS=false"
        )
    return path.read_bytes()


@app.command()
def ingest(
    endpoint: Annotated[
        list[str] | None, typer.Option(help="Jetstream /subscribe URL (repeatable).")
    ] = None,
    stop_after: Annotated[int, typer.Option(help="Exit after this many events.")] = 0,
) -> None:
    """Stream Jetstream into the raw Kafka topic until SIGTERM."""
    settings = _settings()
    updates: dict[str, object] = {}
    if endpoint:
        updates["endpoints"] = tuple(endpoint)
    jetstream = settings.jetstream.model_copy(update=updates)
    ingest_settings = settings.ingest.model_copy(
        update={"stop_after_events": stop_after or settings.ingest.stop_after_events}
    )
    settings = settings.model_copy(update={"jetstream": jetstream, "ingest": ingest_settings})
    serve_metrics(settings.metrics_port, settings.bind_host)
    heartbeat = Heartbeat(HEARTBEAT_STALE_S)
    serve_health(settings.bind_host, settings.health_port, heartbeat)
    with tracing_for(settings.telemetry, SERVICE_INGEST) as provider:
        post_traces = (
            RootSpans(provider, settings.telemetry.trace_sample_ratio, "streampulse.ingest")
            if provider
            else None
        )
        worker = IngestWorker(settings, _read_dictionary(settings), post_traces, heartbeat)
        try:
            summary = uvloop.run(worker.run())
        except InfrastructureError as exc:  # Kafka failed: exit non-zero, the next start resumes
            typer.echo(f"ingest: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"ingest-summary {summary.to_json()}")


@app.command()
def enrich(
    delivery: Annotated[
        str | None, typer.Option(help="at_least_once or exactly_once (default: settings).")
    ] = None,
) -> None:
    """Enrich raw posts with every model through the gateway until SIGTERM."""
    settings = _settings()
    if delivery is not None:
        enrich_settings = type(settings.enrich).model_validate(
            {**settings.enrich.model_dump(), "delivery": delivery}
        )
        settings = settings.model_copy(update={"enrich": enrich_settings})
    serve_metrics(settings.metrics_port, settings.bind_host)
    heartbeat = Heartbeat(HEARTBEAT_STALE_S)
    serve_health(settings.bind_host, settings.health_port, heartbeat)
    with tracing_for(settings.telemetry, SERVICE_ENRICH):
        summary = uvloop.run(EnrichWorker(settings, heartbeat=heartbeat).run())
    typer.echo(f"enrich-summary {summary.to_json()}")


@app.command()
def replay() -> None:
    """Serve a Jetstream-compatible /subscribe stream of recorded and synthetic events."""
    run_replay(_settings())


@app.command()
def up() -> None:
    """Run the pipeline on this machine until Ctrl-C (live Jetstream, else the replay)."""
    try:
        run_stack(_settings())
    except InfrastructureError as exc:
        typer.echo(f"up: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def status() -> None:
    """Show the stages of the running `streampulse up` (from any terminal)."""
    settings = _settings()
    record = RunRecord.read(settings.local.state_dir)
    if record is None or not alive(record.pid):
        typer.echo(f"not running (no live `streampulse up` for {settings.local.state_dir})")
        raise typer.Exit(3)
    typer.echo(
        f"up         pid {record.pid}, {'all stages running' if record.ready else 'starting'}"
    )
    board = StatusBoard()
    for stage in record.stages.values():
        state = "running" if stage.pid is None or alive(stage.pid) else "EXITED"
        typer.echo(f"{stage.name:<10} {state}  pid {stage.pid or '-'}  {stage.url}".rstrip())
        board.watch(stage.name, stage.metrics_url)
        if stage.name == "flink":
            board.flink_rest_url = stage.url
    board.lines()  # first scrape: counters to compute rates from
    time.sleep(2.0)  # stages update some counters once a second
    for line in board.lines():
        typer.echo(line)


@app.command()
def down() -> None:
    """Stop the running `streampulse up` and everything it started (from any terminal)."""
    settings = _settings()
    record = RunRecord.read(settings.local.state_dir)
    if record is None:
        typer.echo("not running")
        return
    killed = stop_run(record)
    remove_record(settings.local.state_dir)
    if killed:
        typer.echo(f"stopped; killed {killed} after they ignored SIGTERM")
    else:
        typer.echo("stopped: every process started by `up` has exited")


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="SQL; none: an interactive shell.")] = None,
    output: Annotated[
        str, typer.Option("--format", help="table, json (one object per row) or csv.")
    ] = "table",
    warehouse: Annotated[
        str | None, typer.Option(help="Local path or s3://bucket/path; default: the local one.")
    ] = None,
    allow_external_access: Annotated[
        bool,
        typer.Option(
            help="Let queries read and write local files and load extensions (a trusted local "
            "shell); off, a query sees only the tables."
        ),
    ] = False,
) -> None:
    """SQL (DuckDB) over the Paimon tables, read with pypaimon: no JVM needed."""
    from streampulse.lakehouse.reading import Lakehouse  # noqa: PLC0415 - optional extra
    from streampulse.lakehouse.shell import interactive, run_query  # noqa: PLC0415

    if output not in {"table", "json", "csv"}:
        raise typer.BadParameter(f"--format must be table, json or csv, not {output!r}")
    settings = _settings()
    paimon = settings.paimon
    if warehouse:
        paimon = paimon.model_copy(update={"warehouse": warehouse})
    try:
        lakehouse = Lakehouse.open(
            paimon, settings.local.state_dir / "warehouse", external_access=allow_external_access
        )
        if query is None:
            interactive(lakehouse, output)  # type: ignore[arg-type]
        else:
            typer.echo(run_query(lakehouse, query, output))  # type: ignore[arg-type]
    except InfrastructureError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def dashboard(
    port: Annotated[int | None, typer.Option(help="Bind port (0 picks a free one).")] = None,
    warehouse: Annotated[
        str | None, typer.Option(help="Local path or s3://bucket/path; default: the local one.")
    ] = None,
) -> None:
    """Serve the web dashboard (Paimon tables and pipeline metrics) until SIGTERM or Ctrl-C."""
    from streampulse.dashboard.app import serve as serve_dashboard  # noqa: PLC0415 - extra

    settings = _settings()
    updates: dict[str, object] = {}
    if port is not None:
        updates["dashboard"] = settings.dashboard.model_copy(update={"port": port})
    if warehouse:
        updates["paimon"] = settings.paimon.model_copy(update={"warehouse": warehouse})
    settings = settings.model_copy(update=updates)
    try:
        serve_dashboard(settings, lambda url: typer.echo(f"dashboard at {url}"))
    except OSError as exc:
        where = f"{settings.dashboard.host}:{settings.dashboard.port}"
        typer.echo(f"dashboard: cannot listen on {where}: {exc}", err=True)
        raise typer.Exit(1) from exc


local_app = typer.Typer(help="Engines of the one-machine stack.", no_args_is_help=True)
app.add_typer(local_app, name="local")


@local_app.command("fetch-kafka")
def fetch_kafka() -> None:
    """Fetch Apache Kafka's jars from Maven Central into the cache (once)."""
    settings = _settings()
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    typer.echo(f"kafka {settings.local.kafka_version}: {libs}")


@local_app.command("kafka")
def run_kafka(
    port: Annotated[int, typer.Option(help="Broker port; 0 picks a free one.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Log directory.")] = None,
    bind_host: Annotated[
        str, typer.Option(help="Listen address: loopback here, 0.0.0.0 in a pod.")
    ] = "127.0.0.1",
    advertised_host: Annotated[
        str | None, typer.Option(help="Host name clients are told (a pod's Service).")
    ] = None,
) -> None:
    """Run one KRaft Kafka broker in the foreground until Ctrl-C."""
    settings = _settings()
    libs = ensure_kafka(settings.cache_dir, settings.local.kafka_version)
    broker = KafkaBroker(
        libs=libs,
        data_dir=data_dir or settings.local.state_dir / "kafka",
        port=port or settings.local.kafka_port,
        heap_mb=settings.local.kafka_heap_mb,
        java_home=settings.local.java_home,
        bind_host=bind_host,
        advertised_host=advertised_host,
    )
    with broker:
        typer.echo(f"kafka: listening on {broker.bootstrap_servers}", err=False)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)


@local_app.command("fetch-trino")
def fetch_trino() -> None:
    """Fetch Trino and the Iceberg REST catalog from Maven Central into the cache (once)."""
    settings = _settings()
    try:
        java_home, server, rest = ensure_local_trino(settings)
    except InfrastructureError as exc:
        typer.echo(f"fetch-trino: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"trino {settings.trino.version}: {server} (Java {java_home})")
    typer.echo(f"iceberg rest catalog: {rest.libs.parent}")


@local_app.command("trino")
def run_trino(
    warehouse: Annotated[
        str | None, typer.Option(help="Local path or s3://bucket/path; default: the local one.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Trino's port (0 picks a free one).")] = None,
) -> None:
    """Run Trino over the Paimon tables (through an Iceberg REST catalog) until Ctrl-C."""
    settings = _settings()
    updates: dict[str, object] = {}
    if warehouse:
        updates["paimon"] = settings.paimon.model_copy(update={"warehouse": warehouse})
    if port is not None:
        updates["trino"] = settings.trino.model_copy(update={"port": port})
    settings = settings.model_copy(update=updates)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    try:
        with trino_over_warehouse(settings) as trino:
            catalog = f"{settings.trino.catalog}.{settings.paimon.database}"
            typer.echo(f"trino: {trino.server.uri} (tables in {catalog}; Ctrl-C stops it)")
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # after the children start
            signal.sigwait(stop_signals)
    except InfrastructureError as exc:
        typer.echo(f"trino: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    """Console-script entrypoint."""
    app()


if __name__ == "__main__":
    main()
