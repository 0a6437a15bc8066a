"""Model clients (litellm, the simulator) and the Ray actors that hold them."""

from maker.errors import MakerError, ModelConfigError, ModelError

from .clients import ModelSpec, check_spec, make_client
from .function_client import FunctionClient
from .protocol import ModelClient, Sample, SampleRequest
from .simulated.simulator import SimConfig, SimulatedModel, mix64, parse_sim_model
from .worker import ModelWorker, WorkerPool, ensure_ray

__all__ = [
    "FunctionClient",
    "MakerError",
    "ModelClient",
    "ModelConfigError",
    "ModelError",
    "ModelSpec",
    "ModelWorker",
    "Sample",
    "SampleRequest",
    "SimConfig",
    "SimulatedModel",
    "WorkerPool",
    "check_spec",
    "ensure_ray",
    "make_client",
    "mix64",
    "parse_sim_model",
]
