"""`maker replay`, `maker report`, `maker tune`: the commands that read a finished step log."""
