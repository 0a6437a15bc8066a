"""Turn a model string into a `ModelClient`.

``sim:...`` is the simulator, ``script:NAME`` a scripted fake (`cluster.scripted`), anything
``openai/NAME`` with an ``api_base`` (OpenAI-compatible servers, the embedded model) to
`OpenAICompatibleClient` (plain HTTP, ~10x less CPU), anything else to litellm (``openai/gpt-4.1-mini``, ``anthropic/...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from maker.tasks.base import Task

from .errors import ModelConfigError
from .litellm_client import LiteLLMClient, LiteLLMConfig, check_model_settings
from .openai_compatible import OpenAICompatibleClient, uses_openai_compatible
from .protocol import ModelClient
from .simulator import SimulatedModel, parse_sim_model


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it, plus where to reach it."""

    model: str
    api_base: str | None = None
    api_bases: tuple[str, ...] = ()  # more servers of the same model; prompt variant v goes to server v % (1 + len)
    concurrency: int = 16
    timeout_s: float = 60.0
    rpm: float | None = None  # requests per minute (litellm models only)
    tpm: float | None = None  # tokens per minute (litellm models only)

    @property
    def in_process_simulator(self) -> bool:
        """A `sim:...` string: the simulator runs inside the worker, no network."""
        return self.model.startswith("sim:") or self.model == "sim"

    @property
    def is_simulated(self) -> bool:
        """Whether results from this model must be labelled simulated: the in-process
        simulator, or an endpoint that says it is `maker sim-server` (asked once, on
        loopback addresses only, so a real provider is never probed)."""
        return self.in_process_simulator or (self.api_base is not None and served_by_sim_server(self.api_base))


_SIM_SERVER: dict[str, bool] = {}


def served_by_sim_server(api_base: str) -> bool:
    """True when `api_base` is a `maker sim-server` on this machine (its /v1/models says so)."""
    if api_base in _SIM_SERVER:
        return _SIM_SERVER[api_base]
    import json
    import urllib.request
    from urllib.parse import urlparse

    found = False
    if urlparse(api_base).hostname in ("127.0.0.1", "localhost", "::1"):
        try:
            with urllib.request.urlopen(api_base.rstrip("/") + "/models", timeout=1.0) as response:
                listing = json.loads(response.read(65536))
            found = any(m.get("owned_by") == SIM_SERVER_OWNER for m in listing.get("data", []))
        except (OSError, ValueError, AttributeError):
            found = False
    _SIM_SERVER[api_base] = found
    return found


#: what `maker sim-server` answers as `owned_by` in /v1/models
SIM_SERVER_OWNER = "maker-sim"


def check_spec(spec: ModelSpec) -> None:
    """Validate a model spec on the driver, before Ray starts or money is spent."""
    if not spec.model or spec.model != spec.model.strip():
        raise ModelConfigError(f"model name {spec.model!r} is empty or padded", model=spec.model)
    if spec.model.startswith("script:"):  # a scripted fake (cluster/scripted.py)
        from .scripted import parse_script_model

        parse_script_model(spec.model)
        return
    if spec.in_process_simulator:
        parse_sim_model(spec.model)
        return
    if "/" not in spec.model and not spec.api_base:
        raise ModelConfigError(
            f"unknown model {spec.model!r}: use sim:P, local, or a litellm provider string "
            "such as openai/gpt-4.1-mini (see 'maker models')",
            model=spec.model,
        )
    check_model_settings(spec.model, spec.api_base)


def make_client(spec: ModelSpec, task: Task) -> ModelClient:
    if spec.model.startswith("script:"):
        from .scripted import make_scripted

        return make_scripted(spec.model)
    if spec.in_process_simulator:
        return SimulatedModel(task, parse_sim_model(spec.model), name=spec.model)
    config = LiteLLMConfig(
        model=spec.model,
        api_base=spec.api_base,
        api_bases=spec.api_bases,
        concurrency=spec.concurrency,
        timeout_s=spec.timeout_s,
        rpm=spec.rpm,
        tpm=spec.tpm,
        stop=tuple(getattr(task, "stop", ()) or ()),
    )
    if uses_openai_compatible(spec.model, spec.api_base):  # OpenAI-compatible endpoint: the cheaper client
        return OpenAICompatibleClient(config)
    return LiteLLMClient(config)
