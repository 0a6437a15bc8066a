"""Running a task: the driver (`driver.run`), the chain scheduler (`chain/`: segments voted
in order, speculatively or behind a draft), the plan scheduler (`dag`), the LLM decomposer
(`decompose`), the live guard, preflight, progress and the run's shared state."""
