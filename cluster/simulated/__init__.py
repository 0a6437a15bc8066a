"""Models that answer without a model: the simulator ``sim:P`` (`simulator`, answering from
a task's ground truth), the same behind a real OpenAI-compatible HTTP endpoint
(`sim_server`, `maker sim-server`), and scripted fakes ``script:NAME`` (`scripted`).  Every
result they give is labelled as simulated."""
