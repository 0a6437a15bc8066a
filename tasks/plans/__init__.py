"""Plans: a DAG of atomic steps that name their inputs by placeholder (`plan`: the ``#E``
format, parsed and checked), the operations a step may use (`ops`: the built-ins; `solve`:
a free-form step and the decomposition request; `user_ops`: `maker.operation` and
`maker.tool`), and a plan as a task (`plan_task`: what the DAG runner and audits run)."""
