#!/usr/bin/env bash
# /docker-entrypoint.sh of the local Flink base. Flink's native Kubernetes mode starts the job
# manager and task manager containers through it (kubernetes.entry.path) with the command to run
# as arguments, e.g. `bash -c 'kubernetes-jobmanager.sh kubernetes-application'`; anything that is
# not one of the official image's role words is run as it is. It writes nothing outside /tmp
# (the pods' root filesystem is read-only; the configuration is a mounted ConfigMap) and does not
# switch users (the pods run as flink already).
set -euo pipefail

FLINK_HOME="${FLINK_HOME:-/opt/flink}"

case "${1:-help}" in
    help)
        echo "Usage: $(basename "$0") (jobmanager|taskmanager|standalone-job|COMMAND [ARG...])"
        echo "  jobmanager, taskmanager, standalone-job: that Flink process in the foreground"
        echo "  anything else is run as it is (Flink's native Kubernetes mode passes its command)"
        exit 0
        ;;
    jobmanager)
        shift
        exec "$FLINK_HOME/bin/jobmanager.sh" start-foreground "$@"
        ;;
    taskmanager)
        shift
        exec "$FLINK_HOME/bin/taskmanager.sh" start-foreground "$@"
        ;;
    standalone-job)
        shift
        exec "$FLINK_HOME/bin/standalone-job.sh" start-foreground "$@"
        ;;
esac

exec "$@"
