"""`maker map`: a table of records in, a table of voted answers out, streamed.

Rooms: `api` (`maker.map`, the Python call), `scheduler` (`run_map`: rows read, voted on
the Ray workers and written a chunk at a time), `output` (the output table and where it is
written), `resume` (the rows a resumed job takes from its step log).  A row is a step of
`maker.tasks.records.map_task.MapTask`.
"""
