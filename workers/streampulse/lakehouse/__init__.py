"""Reading the Paimon lakehouse from Python: tables as Arrow, SQL through DuckDB."""
