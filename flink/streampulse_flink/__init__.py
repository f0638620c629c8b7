"""StreamPulse stream aggregation: Flink SQL (through the Table API) from Kafka into Paimon.

``schemas`` and ``statements`` are plain Python (no PyFlink import), so the workers' tests can
check the wire contract against the DDL; ``job`` and ``query`` are the PyFlink entrypoints.
"""
