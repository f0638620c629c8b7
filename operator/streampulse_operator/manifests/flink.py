"""The windowed-aggregation job as a ``FlinkDeployment`` (``flink.apache.org/v1beta1``) in
PyFlink application mode, checkpointing exactly-once to the lakehouse bucket. With
``observability.metrics`` the job manager and task managers serve Flink's Prometheus reporter
(``plugins/metrics-prometheus`` of the Flink distribution) on a port named ``metrics``."""

from __future__ import annotations

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.kafka import bootstrap_servers
from streampulse_operator.manifests.lakehouse import s3_credential_env, s3_endpoint
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENT = "flink"
FLINK_UID = 9999  # the flink user of the official images
PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
PROMETHEUS_PORT = 9249  # the PrometheusReporter's default port
PROMETHEUS_REPORTER = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"


def render_flink(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    flink, bucket = spec.flink, spec.lakehouse.bucket
    warehouse = f"s3://{bucket}/warehouse"
    env = [
        *c.env_list(
            {
                "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(owner, spec),
                "STREAMPULSE_KAFKA__RAW_TOPIC": spec.topics.raw.name,
                "STREAMPULSE_KAFKA__ENRICHED_TOPIC": spec.topics.enriched.name,
                "STREAMPULSE_PAIMON__WAREHOUSE": warehouse,
            }
        ),
        *s3_credential_env(owner, spec, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ]
    main: dict[str, object] = {
        "name": "flink-main-container",
        "env": env,
        "securityContext": c.container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": c.SCRATCH_DIR}],
    }
    configuration = {
        "taskmanager.numberOfTaskSlots": str(flink.taskSlots),
        "execution.checkpointing.interval": f"{flink.checkpointIntervalSeconds}s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "state.backend.type": "rocksdb",
        "execution.checkpointing.dir": f"s3://{bucket}/flink/checkpoints",
        "execution.checkpointing.savepoint-dir": f"s3://{bucket}/flink/savepoints",
        "s3.endpoint": s3_endpoint(owner, spec),
        "s3.path.style.access": "true",
    }
    if spec.observability.metrics:
        configuration["metrics.reporter.prom.factory.class"] = PROMETHEUS_REPORTER
        configuration["metrics.reporter.prom.port"] = str(PROMETHEUS_PORT)
        main["ports"] = [{"name": "metrics", "containerPort": PROMETHEUS_PORT}]
    pod_template = {
        "metadata": {"labels": c.labels(owner, COMPONENT)},
        "spec": {
            "securityContext": c.pod_security_context(FLINK_UID),
            "containers": [main],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    }
    deployment = c.obj(
        "flink.apache.org/v1beta1",
        "FlinkDeployment",
        c.metadata(owner, c.child_name(owner, "flink"), COMPONENT),
        spec={
            "image": flink.image,
            "imagePullPolicy": spec.image.pullPolicy,
            "flinkVersion": flink.flinkVersion,
            "serviceAccount": "flink",
            "flinkConfiguration": configuration,
            "podTemplate": pod_template,
            "jobManager": {
                "replicas": 1,
                "resource": {"cpu": flink.jobManager.cpu, "memory": flink.jobManager.memory},
            },
            "taskManager": {
                "resource": {"cpu": flink.taskManager.cpu, "memory": flink.taskManager.memory},
            },
            "job": {
                "jarURI": "local:///opt/flink/opt/flink-python.jar",
                "entryClass": PYTHON_DRIVER,
                "args": ["-pym", "streampulse_flink.job"],
                "parallelism": flink.parallelism,
                "upgradeMode": "savepoint",
                "state": "suspended" if spec.suspend else "running",
            },
        },
    )
    return [deployment]
