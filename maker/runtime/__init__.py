"""Running a task: the driver (`driver.run`), the chain scheduler (in order, speculative,
drafted segments), the plan scheduler (`dag`), the live guard, preflight and progress."""
