"""StreamPulse data plane: ingestion, enrichment, model serving and replay of the firehose."""

__version__ = "0.1.0"
