"""The embedded model on this machine: GGUF files served by llama-cpp-python on 127.0.0.1.

`server`: one server process (`LocalServer`: start, watch, restart, stop; the checks
before it starts).  `serving`: the servers of a process, one set per GGUF file shared by
every call (`shared`, `serving`).  `_child`: the script each server runs as (tied to
maker's life, llama.cpp's settings applied before the model loads).
"""
