"""Metrics the Grafana dashboards read from third-party exporters, by exporter, with what makes
each exporter publish them. ``tests/unit/test_grafana_dashboards.py`` accepts a name in a PromQL
query when the StreamPulse code exports it or it is listed here.

Add a name only from its exporter's documentation, with the exporter's type: counters (and
histogram series) must be read through rate(), irate() or increase(). A histogram is listed by
its base name; its ``_bucket``, ``_sum`` and ``_count`` series follow.
"""

from __future__ import annotations

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

# Strimzi's Kafka Exporter (danielqsj/kafka_exporter): `kafkaExporter` in the Kafka resource the
# operator renders when observability.metrics is on (manifests/kafka.py), scraped through the
# <name>-kafka-exporter PodMonitor (port tcp-prometheus). Labels: topic, partition, consumergroup.
# Offsets are gauges: the dashboards take rate() of the newest offset as messages per second.
KAFKA_EXPORTER = {
    "kafka_brokers": GAUGE,
    "kafka_topic_partitions": GAUGE,
    "kafka_topic_partition_current_offset": GAUGE,
    "kafka_topic_partition_oldest_offset": GAUGE,
    "kafka_topic_partition_in_sync_replica": GAUGE,
    "kafka_topic_partition_replicas": GAUGE,
    "kafka_topic_partition_under_replicated_partition": GAUGE,
    "kafka_consumergroup_current_offset": GAUGE,
    "kafka_consumergroup_lag": GAUGE,
}

# Flink's PrometheusReporter (plugins/metrics-prometheus of the Flink distribution), configured by
# metrics.reporter.prom.* in the FlinkDeployment (manifests/flink.py) and scraped through the
# <name>-flink PodMonitor. Names are flink_<logical scope>_<metric>; scope variables (job_name,
# task_name, operator_name, subtask_index, tm_id) are labels. Flink counters and meters are
# exported as gauges.
FLINK_REPORTER = {
    "flink_jobmanager_numRunningJobs": GAUGE,
    "flink_jobmanager_numRegisteredTaskManagers": GAUGE,
    "flink_jobmanager_taskSlotsAvailable": GAUGE,
    "flink_jobmanager_taskSlotsTotal": GAUGE,
    "flink_jobmanager_job_numRestarts": GAUGE,
    "flink_jobmanager_job_lastCheckpointDuration": GAUGE,
    "flink_jobmanager_job_lastCheckpointSize": GAUGE,
    "flink_jobmanager_job_lastCheckpointFullSize": GAUGE,
    "flink_jobmanager_job_numberOfCompletedCheckpoints": GAUGE,
    "flink_jobmanager_job_numberOfFailedCheckpoints": GAUGE,
    "flink_taskmanager_job_task_numRecordsInPerSecond": GAUGE,
    "flink_taskmanager_job_task_numRecordsOutPerSecond": GAUGE,
    "flink_taskmanager_job_task_busyTimeMsPerSecond": GAUGE,
    "flink_taskmanager_job_task_backPressuredTimeMsPerSecond": GAUGE,
    # the source reader's standard metrics (FLIP-33), on the Kafka source operators
    "flink_taskmanager_job_task_operator_pendingRecords": GAUGE,
    "flink_taskmanager_job_task_operator_currentEmitEventTimeLag": GAUGE,
    "flink_taskmanager_job_task_operator_currentOutputWatermark": GAUGE,
    "flink_jobmanager_Status_JVM_Memory_Heap_Used": GAUGE,
    "flink_taskmanager_Status_JVM_Memory_Heap_Used": GAUGE,
    "flink_taskmanager_Status_JVM_CPU_Load": GAUGE,
}

# Paimon's commit metrics, bridged into Flink's metric groups by the Paimon sink (group
# paimon.table.<table>.commit on the committer operator; the table is a key-value group, so it is
# the `table` label) and exported by the same PrometheusReporter.
PAIMON_COMMIT = {
    f"flink_taskmanager_job_task_operator_paimon_table_commit_{name}": GAUGE
    for name in (
        "lastCommitDuration",
        "lastCommitAttempts",
        "lastTableFilesAdded",
        "lastDeltaRecordsAppended",
    )
}

# MinIO's cluster metrics (metrics v2, /minio/v2/metrics/cluster on the S3 port), readable without
# a bearer token because the operator sets MINIO_PROMETHEUS_AUTH_TYPE=public on the managed MinIO
# (manifests/lakehouse.py); scraped through the <name>-minio ServiceMonitor. MinIO names some
# gauges *_total.
MINIO = {
    "minio_cluster_capacity_usable_total_bytes": GAUGE,
    "minio_cluster_capacity_usable_free_bytes": GAUGE,
    "minio_cluster_usage_total_bytes": GAUGE,
    "minio_cluster_usage_object_total": GAUGE,
    "minio_cluster_nodes_offline_total": GAUGE,
    "minio_cluster_drive_offline_total": GAUGE,
    "minio_s3_requests_total": COUNTER,
    "minio_s3_requests_4xx_errors_total": COUNTER,
    "minio_s3_requests_5xx_errors_total": COUNTER,
    "minio_s3_requests_inflight_total": GAUGE,
    "minio_s3_requests_waiting_total": GAUGE,
    "minio_s3_traffic_received_bytes": COUNTER,
    "minio_s3_traffic_sent_bytes": COUNTER,
}

# kube-state-metrics (v2 names), part of every kube-prometheus-stack install: the model HPAs.
KUBE_STATE_METRICS = {
    "kube_horizontalpodautoscaler_status_current_replicas": GAUGE,
    "kube_horizontalpodautoscaler_spec_max_replicas": GAUGE,
}

# The kubelet's volume statistics (scraped by kube-prometheus-stack): the Kafka and MinIO volumes.
KUBELET = {
    "kubelet_volume_stats_used_bytes": GAUGE,
    "kubelet_volume_stats_capacity_bytes": GAUGE,
    "kubelet_volume_stats_available_bytes": GAUGE,
}

EXPORTERS = {
    "Strimzi Kafka Exporter": KAFKA_EXPORTER,
    "Flink PrometheusReporter": FLINK_REPORTER,
    "Paimon commit metrics (through Flink)": PAIMON_COMMIT,
    "MinIO cluster metrics": MINIO,
    "kube-state-metrics": KUBE_STATE_METRICS,
    "kubelet": KUBELET,
}

EXTERNAL_METRICS: dict[str, str] = {
    name: kind for metrics in EXPORTERS.values() for name, kind in metrics.items()
}
