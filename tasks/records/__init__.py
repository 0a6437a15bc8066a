"""Records as a task: `source` reads a table of records in chunks (CSV, JSONL, Parquet, or a
table in memory); `map_task` makes each record one voted step (`maker map`)."""
