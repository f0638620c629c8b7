"""The windowed-aggregation job as a ``FlinkDeployment`` (``flink.apache.org/v1beta1``) in
PyFlink application mode, checkpointing exactly-once to the lakehouse bucket, with its own
ServiceAccount and a RoleBinding to the ``streampulse-flink`` ClusterRole the chart installs
(what Flink's native Kubernetes mode needs: task manager pods, and ConfigMaps for Kubernetes HA).

The job reads its options from ``STREAMPULSE_*`` variables and arguments
(``flink/streampulse_flink/options.py``): the Kafka topics, the Paimon warehouse, its S3
endpoint and keys (from the credentials Secret, by reference), and the spec's parallelism and
checkpoint interval as arguments, so the job's own defaults never override the spec. A unit test
resolves the options from the rendered pod template exactly as the job does.

Production settings: Kubernetes HA with its storage in the bucket (the job manager recovers, and
``last-state`` upgrades resume from the newest checkpoint), checkpoints retained on
cancellation, job submission through the REST API off. With ``observability.metrics`` the job
manager and task managers serve Flink's Prometheus reporter on a port named ``metrics``."""

from __future__ import annotations

from typing import Any

from streampulse_operator.manifests import common as c
from streampulse_operator.manifests.kafka import bootstrap_servers
from streampulse_operator.manifests.lakehouse import s3_credential_env, s3_endpoint
from streampulse_operator.spec import Owner, StreamPulseSpec

COMPONENT = "flink"
FLINK_UID = 9999  # the flink user of the official images
PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
PROMETHEUS_PORT = 9249  # the PrometheusReporter's default port
PROMETHEUS_REPORTER = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
# Installed by the chart (templates/rbac.yaml); the operator may only bind it (RBAC ``bind``).
CLUSTER_ROLE = "streampulse-flink"
MAX_CLUSTER_ID = 45  # the Flink operator refuses longer FlinkDeployment names


def flink_name(owner: Owner) -> str:
    """The FlinkDeployment's name, which is also the Flink cluster id."""
    return c.child_name(owner, COMPONENT)


def job_args(spec: StreamPulseSpec) -> list[str]:
    """The job's arguments after the PythonDriver's: the module and the options the spec sets."""
    return [
        "-pym",
        "streampulse_flink.job",
        "--parallelism",
        str(spec.flink.parallelism),
        "--checkpoint-interval-ms",
        str(spec.flink.checkpointIntervalSeconds * 1000),
    ]


def _job_env(owner: Owner, spec: StreamPulseSpec) -> list[dict[str, Any]]:
    return [
        *c.env_list(
            {
                "STREAMPULSE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(owner, spec),
                "STREAMPULSE_KAFKA__RAW_TOPIC": spec.topics.raw.name,
                "STREAMPULSE_KAFKA__ENRICHED_TOPIC": spec.topics.enriched.name,
                "STREAMPULSE_PAIMON__WAREHOUSE": f"s3://{spec.lakehouse.bucket}/warehouse",
                "STREAMPULSE_PAIMON__S3_ENDPOINT": s3_endpoint(owner, spec),
            }
        ),
        # the Paimon catalog's keys
        *s3_credential_env(
            owner, spec, "STREAMPULSE_PAIMON__S3_ACCESS_KEY", "STREAMPULSE_PAIMON__S3_SECRET_KEY"
        ),
        # Flink's S3 file system (checkpoints, savepoints, HA) takes the AWS variables
        *s3_credential_env(owner, spec, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ]


def _configuration(owner: Owner, spec: StreamPulseSpec) -> dict[str, str]:
    flink, bucket = spec.flink, spec.lakehouse.bucket
    configuration = {
        "taskmanager.numberOfTaskSlots": str(flink.taskSlots),
        "execution.checkpointing.interval": f"{flink.checkpointIntervalSeconds}s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": "rocksdb",
        "execution.checkpointing.dir": f"s3://{bucket}/flink/checkpoints",
        "execution.checkpointing.savepoint-dir": f"s3://{bucket}/flink/savepoints",
        "high-availability.type": "kubernetes",
        "high-availability.storageDir": f"s3://{bucket}/flink/ha",
        "web.submit.enable": "false",
        "s3.endpoint": s3_endpoint(owner, spec),
        "s3.path.style.access": "true",
        # Directory markers are kept, as the job's Paimon catalog keeps them: deleting them after
        # every write is wasted requests, and stores that map objects to directories (versitygw)
        # refuse it, which stalls HA and checkpoint writes in retries until submission times out.
        "s3.directory.marker.retention": "keep",
    }
    if spec.observability.metrics:
        configuration["metrics.reporter.prom.factory.class"] = PROMETHEUS_REPORTER
        configuration["metrics.reporter.prom.port"] = str(PROMETHEUS_PORT)
    return configuration


def render_flink(owner: Owner, spec: StreamPulseSpec) -> list[c.Manifest]:
    flink = spec.flink
    name = flink_name(owner)
    main: dict[str, Any] = {
        "name": "flink-main-container",
        "env": _job_env(owner, spec),
        "securityContext": c.container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": c.SCRATCH_DIR}],
    }
    if spec.observability.metrics:
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
        c.metadata(owner, name, COMPONENT),
        spec={
            "image": flink.image,
            "imagePullPolicy": spec.image.pullPolicy,
            "flinkVersion": flink.flinkVersion,
            "serviceAccount": name,
            "flinkConfiguration": _configuration(owner, spec),
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
                "args": job_args(spec),
                "parallelism": flink.parallelism,
                # with Kubernetes HA: resume from the newest checkpoint, no savepoint needed
                "upgradeMode": "last-state",
                "state": "suspended" if spec.suspend else "running",
            },
        },
    )
    account = c.obj("v1", "ServiceAccount", c.metadata(owner, name, COMPONENT))
    binding = c.obj(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        c.metadata(owner, name, COMPONENT),
        roleRef={
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CLUSTER_ROLE,
        },
        subjects=[{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    )
    return [account, binding, deployment]
