"""``streampulse dashboard``: the Paimon tables and the pipeline's metrics in a local web page."""
