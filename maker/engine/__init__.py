"""Voting one step: draw a step's samples, judge them with the run's red flags, count them on
a ballot, and build the step log's rows.  Every scheduler, the estimator and a single voted
call go through this package."""
