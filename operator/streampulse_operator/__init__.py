"""Control plane: reconciles one StreamPulse resource into the pipeline's engines."""
