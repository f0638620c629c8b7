"""The streaming job: ``python -m streampulse_flink.job --bootstrap-servers ... --warehouse ...``.

Runs on Flink's local mini-cluster when started directly (and as the entry script of the
Flink Kubernetes Operator's PyFlink job on a cluster). Connector jars are given with
``--jars`` (``file://`` URLs, ``;``-separated) or ``STREAMPULSE_FLINK_JARS``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import pyflink
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, TableEnvironment

from streampulse_flink.options import JobOptions
from streampulse_flink.statements import inserts, setup
from streampulse_flink.tables import CATALOG, TABLES

log = logging.getLogger(__name__)


# The local mini-cluster keeps the job's state on the heap (the hashmap state backend), a live
# set that grows by hundreds of MB; G1, the JVM's default, keeps re-scanning it concurrently.
# The parallel collector does not: the same backlog takes 21-39 % less CPU (docs/flink.md).
LOCAL_COLLECTOR = "-XX:+UseParallelGC"
# The mini-cluster's log to this process's standard output (the caller's log of the job), not to
# a file in the installed package that every run shares and truncates.
LOCAL_LOG4J = Path(__file__).resolve().with_name("log4j-local.properties")
# The optimizing compiler (C2) for the hottest code only: ten times the JVM's call and loop
# counts before a method is recompiled by it. With the defaults, C2 spent a fifth of the job's
# CPU in its first minutes on code that runs no faster for it (docs/flink.md).
LOCAL_COMPILER = (
    "-XX:Tier4InvocationThreshold=50000",
    "-XX:Tier4MinInvocationThreshold=6000",
    "-XX:Tier4CompileThreshold=60000",
    "-XX:Tier4BackEdgeThreshold=400000",
)


def _with_fixed_heap(options: list[str]) -> list[str]:
    """The heap's initial size equal to its maximum, as Flink starts its task managers.

    The collector then sizes its generations for the whole heap from the start instead of
    growing it a step at a time while the state grows.
    """
    maximum = [option for option in options if option.startswith("-Xmx")]
    if maximum and not any(option.startswith("-Xms") for option in options):
        return [*options, "-Xms" + maximum[-1].removeprefix("-Xmx")]
    return options


def prepare_local_jvm(scratch_dir: str) -> None:
    """Options for the mini-cluster's JVM, which PyFlink starts from ``JVM_ARGS``.

    The caller's ``JVM_ARGS`` (heap size) come first, with the initial heap set to the maximum;
    the parallel collector unless they choose a collector, and C2 for the hottest code unless
    they set the compilation tiers; temporary files under ``scratch_dir`` when given. Flink
    keeps blobs, extracted jars and spill files under ``java.io.tmpdir``, and a job that is
    killed leaves them there.
    """
    # PyFlink opens a gRPC server for Python functions on every interface of a local run; the
    # job has none, and "process" mode starts no server (the documented alternative mode).
    os.environ.setdefault("_python_worker_execution_mode", "process")
    # The distribution is the installed package. Named here, PyFlink keeps the caller's
    # FLINK_PLUGINS_DIR; left for it to find, it sets that to the package's plugins/ as well.
    os.environ.setdefault("FLINK_HOME", str(Path(pyflink.__file__).resolve().parent))
    os.environ.setdefault("LOG4J_PROPERTIES", str(LOCAL_LOG4J))
    options = _with_fixed_heap(os.environ.get("JVM_ARGS", "").split())
    if not any(option.startswith("-XX:+Use") and option.endswith("GC") for option in options):
        options.append(LOCAL_COLLECTOR)
    if not any(option.startswith(("-XX:Tier", "-XX:-Tier")) for option in options):
        options.extend(LOCAL_COMPILER)
    if scratch_dir:
        path = Path(scratch_dir)
        path.mkdir(parents=True, exist_ok=True)
        options.append(f"-Djava.io.tmpdir={path}")
        os.environ["TMPDIR"] = str(path)
        tempfile.tempdir = str(path)
    os.environ["JVM_ARGS"] = " ".join(options)


def initialize_file_systems(opts: JobOptions) -> None:
    """Flink's file systems in the local JVM, with the plugins of ``FLINK_PLUGINS_DIR``.

    A cluster's entrypoints load the plugins (``s3://`` is Flink's S3 file system, in the
    distribution's ``plugins/``) and configure them; PyFlink's local mini-cluster does neither,
    so a checkpoint directory on S3 would find no file system for its scheme. The S3 options
    (endpoint, keys, path-style access) are the catalog's, set in the JVM only: the secret is
    in no file and on no command line.
    """
    jvm = get_gateway().jvm
    config = jvm.org.apache.flink.configuration.Configuration()
    for key, value in opts.s3_options().items():
        config.setString(key, value)
    plugins = jvm.org.apache.flink.core.plugin.PluginUtils.createPluginManagerFromRootFolder(config)
    jvm.org.apache.flink.core.fs.FileSystem.initialize(config, plugins)


def table_environment(opts: JobOptions, jars: str, *, streaming: bool = True) -> TableEnvironment:
    """The job's table environment. ``jars`` are the connectors of a local run (the mini-cluster
    this process starts); in a cluster image they are in ``/opt/flink/lib`` already, none are
    given, and the cluster's own configuration (REST endpoint, JVM) is left alone."""
    local = bool(jars)
    if local:
        prepare_local_jvm(opts.scratch_dir)
        initialize_file_systems(opts)
    settings = (
        EnvironmentSettings.in_streaming_mode()
        if streaming
        else EnvironmentSettings.in_batch_mode()
    )
    env = TableEnvironment.create(settings)
    config = env.get_config()
    values = {
        "pipeline.name": "streampulse-aggregation" if streaming else "streampulse-query",
        "parallelism.default": str(opts.parallelism),
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": f"{opts.idle_timeout_ms} ms",
        "table.exec.state.ttl": f"{opts.dedup_ttl_h} h",
        # Off on purpose: proctime mini-batching replaces the event-time watermark with
        # processing-time markers, which would make every event look late. The window
        # aggregates buffer and combine in memory on their own.
        "table.exec.mini-batch.enabled": "false",
        # The deduplicated views are planned once and shared by every table that reads them
        # (one dedup state and one shuffle per topic, not one per table), and records handed
        # between chained operators are not copied: the SQL operators never keep them.
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
        "pipeline.object-reuse": "true",
        "table.exec.sink.upsert-materialize": "NONE",
        "execution.checkpointing.interval": f"{opts.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    }
    if local:  # every port of the mini-cluster on loopback, the connectors from the cache
        values["rest.bind-address"] = "127.0.0.1"
        values["rest.address"] = "127.0.0.1"
        values["rest.port"] = str(opts.rest_port)
        values["jobmanager.bind-host"] = "127.0.0.1"  # the blob server, RPC
        values["taskmanager.bind-host"] = "127.0.0.1"
        values["pipeline.jars"] = jars
    if opts.checkpoint_dir:
        values["execution.checkpointing.dir"] = opts.checkpoint_dir
    if opts.restore_from and streaming:
        values["execution.state-recovery.path"] = opts.restore_from
    for key, value in values.items():
        config.set(key, value)
    return env


def publish_new_tables(env: TableEnvironment, database: str) -> list[str]:
    """An empty first snapshot for every table that has none; the names of those tables.

    Paimon writes a table's Iceberg metadata at a commit, and a streaming job commits a table
    only once rows reach it: until then Trino would not know the table (a day without
    anomalies, a stream without late events), and a query of it would fail instead of
    returning no rows. One empty batch commit, before the job starts, publishes the table.
    """
    gateway = get_gateway()
    java = gateway.jvm.java
    # the Java catalog behind the Flink catalog: Paimon's own API
    paimon = env.get_catalog(CATALOG)._j_catalog.catalog()
    keep_empty = java.util.HashMap()
    keep_empty.put("snapshot.ignore-empty-commit", "false")
    published = []
    for name in TABLES:
        table = paimon.getTable(
            gateway.jvm.org.apache.paimon.catalog.Identifier.create(database, name)
        )
        if table.latestSnapshot().isPresent():
            continue
        # Paimon's Table interface by reflection: Py4J cannot call its methods on the catalog's
        # table classes, which are not public
        loader = table.getClass().getClassLoader()
        interface = java.lang.Class.forName("org.apache.paimon.table.Table", True, loader)
        one_map = gateway.new_array(java.lang.Class, 1)
        one_map[0] = java.lang.Class.forName("java.util.Map")
        with_options = gateway.new_array(java.lang.Object, 1)
        with_options[0] = keep_empty
        copy = interface.getMethod("copy", one_map).invoke(table, with_options)
        no_types = gateway.new_array(java.lang.Class, 0)
        no_values = gateway.new_array(java.lang.Object, 0)
        builder = interface.getMethod("newBatchWriteBuilder", no_types).invoke(copy, no_values)
        commit = builder.newCommit()
        try:
            commit.commit(java.util.ArrayList())
        finally:
            commit.close()
        published.append(name)
    return published


def run(opts: JobOptions, jars: str) -> None:
    env = table_environment(opts, jars)
    for statement in setup(opts):
        env.execute_sql(statement)
    published = publish_new_tables(env, opts.database)
    if published:
        log.info("published the new tables %s with an empty snapshot", ", ".join(published))
    statements = env.create_statement_set()
    for statement in inserts(opts):
        statements.add_insert_sql(statement)
    result = statements.execute()
    client = result.get_job_client()
    job_id = client.get_job_id() if client is not None else "?"
    log.info("streampulse aggregation job %s running", job_id)
    print(f"job started: {job_id}", flush=True)
    result.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = sys.argv[1:]
    jars = os.environ.get("STREAMPULSE_FLINK_JARS", "")
    if "--jars" in args:
        at = args.index("--jars")
        jars = args[at + 1]
        del args[at : at + 2]
    run(JobOptions.from_argv(args), jars)


if __name__ == "__main__":
    main()
