"""The step log: one versioned Arrow schema, the Parquet writer that survives kill -9, and its readers."""
