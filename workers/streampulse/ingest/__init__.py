"""Ingestion: Jetstream websocket -> normalized events -> the raw Kafka topic."""
