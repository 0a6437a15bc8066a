"""The chain scheduler: a chained task's steps voted in segments on Ray workers.

`segment`: the unit of work (`SegmentJob` out, `SegmentResult` back); `loop`: the step loop a
worker runs on a segment (`run_segment`: in order, or through `speculation`'s window of steps
voted ahead); `draft`: a cheap proposer walking ahead of the voters; `schedule`: which
segments are in flight, on which premises."""
