"""maker's own tasks, the ones `maker run NAME` knows (`maker.tasks.TASKS`): Towers of Hanoi
(`hanoi`, with its notation and rules in `hanoi_rules` and prompt variants in
`hanoi_variants`), pointer chasing (`chase`), the plan decomposers `add`, `multiply` and
`sort` (`decomposers`), and one prompt voted as one step (`one_prompt`, what `maker.vote` runs).

What a task of your own is written with stays one level up: `maker.tasks.base`, `keys`,
`fields`, `chain_task`, and `maker.tasks.plans` for plans."""
