"""What maker runs on every node of a Ray cluster beside its workers.

`servers`: the embedded model served on each node that runs a worker, each worker
talking to its own node's servers (`serving_on_nodes`, the `NodeServers` actor).
"""

from .servers import NodeAnswer, NodeServers, NodeServing, serving_on_nodes

__all__ = ["NodeAnswer", "NodeServers", "NodeServing", "serving_on_nodes"]
