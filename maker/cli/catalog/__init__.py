"""`maker tasks`, `maker models`, `maker plan-show`: what maker can run, and a task's plan, without running it."""
