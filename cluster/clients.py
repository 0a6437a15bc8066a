"""Turn a model string into a `ModelClient`.

``sim:...`` is the simulator, ``script:NAME`` a scripted fake (`cluster.simulated.scripted`),
``py:pkg.module:factory`` (or ``py:path/to/file.py:factory``) a client built by the user's
own code on each worker, a `ModelClient` object (e.g. ``FunctionClient(fn)``) is used as
is (shipped to the workers by value), ``openai/NAME`` with an ``api_base`` (OpenAI-compatible
servers, the embedded model) goes to `OpenAICompatibleClient` (plain HTTP, ~10x less client
CPU than litellm), and anything else to litellm (``openai/gpt-4.1-mini``, ``anthropic/...``).
``local`` / ``local:PATH.gguf`` (the embedded model) is checked here, but has a client only
once served: the caller rewrites it to ``openai/<alias>`` at its servers (`maker.runtime.local_models`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from maker.tasks.base import Task, optional

from maker.errors import ModelConfigError

from .http.litellm_client import LiteLLMClient, LiteLLMConfig, check_model_settings, stop_sent, temperature_sent
from .http.openai_compatible import OpenAICompatibleClient, uses_openai_compatible
from .local.server import INSTALL_HINT, check_gguf, is_local_model, llama_server_missing, model_path_of
from .pricing import FREE_LOCAL, Price, price_of
from .protocol import ModelClient
from .simulated.simulator import SimulatedModel, parse_sim_model


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it, plus where to reach it.

    `model` is a model string, or a `ModelClient` object (``ModelSpec(FunctionClient(fn))``):
    then `client` holds it and `model` becomes its name."""

    model: str
    api_base: str | None = None
    api_bases: tuple[str, ...] = ()  # more servers of the same model; prompt variant v goes to server v % (1 + len)
    concurrency: int = 16
    timeout_s: float = 60.0
    rpm: float | None = None  # requests per minute (litellm models only)
    tpm: float | None = None  # tokens per minute (litellm models only)
    client: Any = None  # a ready ModelClient (the user's own), used instead of the model string
    #: on a cluster, one (node id, api_base, api_bases) per node that serves the model itself
    #: (`cluster.nodes`): a client built on a node talks to that node's servers
    node_bases: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: what its tokens cost (`cluster.pricing.Price`); None: `unit_price` looks it up
    price: Price | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) and hasattr(self.model, "complete"):
            object.__setattr__(self, "client", self.model)
            object.__setattr__(self, "model", str(getattr(self.model, "name", type(self.model).__name__)))

    def on_node(self, node_id: str) -> ModelSpec:
        """This spec as a client on Ray node `node_id` uses it: that node's own servers when
        the model is served per node (`node_bases`), else unchanged.

        Raises ModelConfigError when the model is served per node but not on this one."""
        if not self.node_bases:
            return self
        for node, api_base, api_bases in self.node_bases:
            if node == node_id:
                return replace(self, api_base=api_base, api_bases=api_bases, node_bases=())
        raise ModelConfigError(
            f"{self.model}: no local model server on Ray node {node_id} "
            f"(served on {', '.join(n[:12] for n, _, _ in self.node_bases)})",
            model=self.model,
        )

    def priced(self) -> ModelSpec:
        """This spec with its `unit_price` filled in (a client object's price is left to it)."""
        return self if self.client is not None or self.price is not None else replace(self, price=self.unit_price())

    def unit_price(self) -> Price:
        """What this model's tokens cost and where that comes from: `price` when given, free
        for a fake (the simulator, `maker sim-server`, a script, a client that says it is
        simulated), free for the embedded model, else litellm's offline table -- unknown (`Price.known` False) for a model
        it does not know, and for a client object of the user's own."""
        if self.price is not None:
            return self.price
        if self.client is not None:
            own = getattr(self.client, "unit_price", None)  # an HTTP client knows its model's price
            if isinstance(own, Price):
                return own
            if getattr(self.client, "simulated", False):
                return Price(0.0, 0.0, "simulated (free)")
            return Price(0.0, 0.0, "unknown: your own client (give ModelSpec(client, price=Price(...)))", known=False)
        if self.model.startswith("py:"):
            return Price(0.0, 0.0, "unknown: a py: model (pass --price-in/--price-out)", known=False)
        if self.is_simulated:
            return Price(0.0, 0.0, "simulated (free)")
        if is_local_model(self.model):  # the embedded model runs on this machine: no provider bills it
            return FREE_LOCAL
        return price_of(self.model)

    @property
    def in_process_simulator(self) -> bool:
        """A `sim:...` string: the simulator runs inside the worker, no network."""
        return self.model.startswith("sim:") or self.model == "sim"

    @property
    def answers_from_ground_truth(self) -> bool:
        """The simulator, in process or behind an endpoint that says it is `maker sim-server`
        (asked once, on loopback addresses only, so a real provider is never probed),
        however its address is written: it can only answer tasks that have ground truth."""
        return self.in_process_simulator or (self.api_base is not None and served_by_sim_server(self.api_base))

    @property
    def is_simulated(self) -> bool:
        """Whether results from this model must be labelled simulated: the simulator
        (`answers_from_ground_truth`) or a scripted fake (`script:NAME`); the user's own
        client only when it says so (`simulated = True`)."""
        if self.client is not None:
            return bool(getattr(self.client, "simulated", False))
        return self.model.startswith("script:") or self.answers_from_ground_truth


_SIM_SERVER: dict[str, bool] = {}
_LOOPBACK = ("localhost", "::1", "0.0.0.0")


def loopback_root(api_base: str) -> str | None:
    """``http://HOST:PORT`` of an address on this machine, whatever form it is written in
    (with or without a scheme, ``/v1`` or a trailing slash; ``localhost``, ``127.x.y.z``,
    ``[::1]``, any case); None for any other host.

        >>> loopback_root("LOCALHOST:18452/v1/"), loopback_root("http://127.0.0.1:18452")
        ('http://localhost:18452', 'http://127.0.0.1:18452')
        >>> loopback_root("https://api.openai.com/v1") is None
        True
    """
    from urllib.parse import urlsplit

    text = api_base.strip()
    parts = urlsplit(text if "://" in text else "http://" + text)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if host is None or not (host in _LOOPBACK or host.startswith("127.")):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'http'}://{shown}" + (f":{port}" if port else "")


def served_by_sim_server(api_base: str) -> bool:
    """True when `api_base` is a `maker sim-server` on this machine (its models listing says so).

    The listing is asked for at ``/v1/models`` and ``/models`` under the address's host and
    port, so the answer does not depend on how the user wrote the address."""
    root = loopback_root(api_base)
    if root is None:
        return False
    if root in _SIM_SERVER:
        return _SIM_SERVER[root]
    import json
    import urllib.request

    found = False
    for path in ("/v1/models", "/models"):
        try:
            with urllib.request.urlopen(root + path, timeout=1.0) as response:
                listing = json.loads(response.read(65536))
            found = any(m.get("owned_by") == SIM_SERVER_OWNER for m in listing.get("data", []))
        except (OSError, ValueError, AttributeError, TypeError):
            continue
        break
    _SIM_SERVER[root] = found
    return found


#: what `maker sim-server` answers as `owned_by` in /v1/models
SIM_SERVER_OWNER = "maker-sim"


def check_spec(spec: ModelSpec) -> None:
    """Validate a model spec on the driver, before Ray starts or money is spent."""
    if spec.client is not None:
        if not callable(getattr(spec.client, "complete", None)):
            raise ModelConfigError(f"{spec.client!r} is not a ModelClient (it has no complete())", model=spec.model)
        return
    if not spec.model or spec.model != spec.model.strip():
        raise ModelConfigError(f"model name {spec.model!r} is empty or padded", model=spec.model)
    if spec.model.startswith("py:"):  # the user's own factory: built once here, so its errors show now
        build_user_client(spec.model)
        return
    if spec.model.startswith("script:"):  # a scripted fake (cluster/simulated/scripted.py)
        from .simulated.scripted import parse_script_model

        parse_script_model(spec.model)
        return
    if spec.in_process_simulator:
        parse_sim_model(spec.model)
        return
    if is_local_model(spec.model):  # the embedded model: its file and llama-cpp-python, before any server starts
        check_gguf(model_path_of(spec.model), spec.model)
        missing = llama_server_missing()
        if missing is not None:
            raise ModelConfigError(f"the local model needs {missing}: {INSTALL_HINT}", model=spec.model)
        return
    if "/" not in spec.model and not spec.api_base:
        raise ModelConfigError(
            f"unknown model {spec.model!r}: use sim:P, local, or a litellm provider string "
            "such as openai/gpt-4.1-mini (see 'maker models')",
            model=spec.model,
        )
    check_model_settings(spec.model, spec.api_base)


def _litellm_model(spec: ModelSpec) -> str | None:
    """The model string litellm is called with for `spec`; None when litellm is not its client."""
    if spec.client is not None:
        return spec.client.config.model if isinstance(spec.client, LiteLLMClient) else None
    if (spec.model.startswith(("py:", "script:")) or spec.in_process_simulator or is_local_model(spec.model)
            or uses_openai_compatible(spec.model, spec.api_base)):
        return None  # (the embedded model is served and reached through the OpenAI-compatible client)
    return spec.model


def unsent_temperatures(spec: ModelSpec, temperatures: Sequence[float]) -> tuple[float, ...]:
    """Those of `temperatures` that `spec`'s client will not send (litellm drops a temperature
    a model refuses: OpenAI's o-series and gpt-5 take only 1).  Asked offline, before any
    call: of a ready client through its `sends_temperature`, of a model string through
    litellm's parameter mapping; the simulator, scripted fakes and the OpenAI-compatible
    client send what they are given."""
    wanted = tuple(dict.fromkeys(float(t) for t in temperatures))
    sends = getattr(spec.client, "sends_temperature", None) if spec.client is not None else None
    if sends is not None:
        return tuple(t for t in wanted if not sends(t))
    model = _litellm_model(spec)
    return () if model is None else tuple(t for t in wanted if not temperature_sent(model, t))


def settings_notice(spec: ModelSpec, first_temperature: float, temperature: float,
                    stop: Sequence[str] = ()) -> str | None:
    """One line for the user, before the first call, when `spec`'s requests will not carry
    the run's temperatures or the task's `stop` sequences (None when they will): what the
    log then records, and what it means for the scheme that draws each step's first sample
    at `first_temperature`."""
    unsent = unsent_temperatures(spec, (first_temperature, temperature))
    model = _litellm_model(spec)
    stop_dropped = bool(stop) and model is not None and not stop_sent(model)
    if not unsent and not stop_dropped:
        return None
    parts = []
    if unsent:
        shown = " or ".join(f"{t:g}" for t in unsent)
        scheme = (f"a step's first sample is not a temperature-{first_temperature:g} best guess but one more draw, "
                  "and " if first_temperature in unsent and first_temperature != temperature else "")
        parts.append(f"temperature {shown} is not sent to this model (litellm drops it: the model accepts only its "
                     f"default), so those samples are drawn at the provider's default temperature: {scheme}the step "
                     "log records their temperature as null")
    if stop_dropped:
        parts.append(f"the task's stop sequences {list(stop)!r} are not sent either (litellm drops them for this "
                     "model): replies run on past them and are judged whole")
    return f"{spec.model}: " + "; ".join(parts)


def warn_unsent_settings(specs: Sequence[ModelSpec], first_temperature: float, temperature: float,
                         stop: Sequence[str] = ()) -> list[str]:
    """Log `settings_notice` for each spec that has one (once per notice in a process: a
    loop of voted calls says it once), before anything is drawn; return the notices."""
    import logging

    notes = []
    for spec in specs:
        note = settings_notice(spec, first_temperature, temperature, stop)
        if note is None:
            continue
        notes.append(note)
        if note not in _NOTICED:
            _NOTICED.add(note)
            logging.getLogger("maker").warning("maker: %s", note)
    return notes


_NOTICED: set[str] = set()


def user_factory(model: str) -> Any:
    """The object ``py:pkg.module:attr`` (or ``py:path/file.py:attr``) names; ModelConfigError
    with one line when it does not import or is not callable."""
    from maker.tasks.plugins import PluginError, import_where, split_ref

    try:
        where, attr = split_ref(model[len("py:"):])
        target = getattr(import_where(where), attr, None)
    except PluginError as exc:
        raise ModelConfigError(f"{model}: {exc}", model=model) from None
    if target is None or not callable(target) and not hasattr(target, "complete"):
        raise ModelConfigError(f"{model}: {where} has no callable {attr!r}", model=model)
    return target


def build_user_client(model: str) -> ModelClient:
    """The client a ``py:`` model's factory builds (a plain function is wrapped in a
    `FunctionClient`); ModelConfigError naming the factory when it raises."""
    from .function_client import FunctionClient

    target = user_factory(model)
    if hasattr(target, "complete"):
        client = target
    elif _required_positional(target) >= 3:  # the model function itself: (prompt, temperature, seed)
        client = target
    else:
        try:
            client = target()
        except Exception as exc:
            raise ModelConfigError(f"{model}: the factory raised {type(exc).__name__}: {exc}", model=model) from None
    if not hasattr(client, "complete") and callable(client):
        client = FunctionClient(client, name=model)
    if not callable(getattr(client, "complete", None)):
        raise ModelConfigError(f"{model}: the factory returned {type(client).__name__}, not a ModelClient or function",
                               model=model)
    return client


def _required_positional(fn: Any) -> int:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    return sum(1 for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def make_client(spec: ModelSpec, task: Task) -> ModelClient:
    """The client for `spec` in this process (a Ray worker, or the driver).  A model served
    on every node of a cluster (`ModelSpec.node_bases`) is reached at this node's servers;
    ModelConfigError when this node has none."""
    if spec.node_bases:
        import ray

        spec = spec.on_node(ray.get_runtime_context().get_node_id())
    if spec.client is not None:
        return spec.client
    if spec.model.startswith("py:"):
        return build_user_client(spec.model)
    if spec.model.startswith("script:"):
        from .simulated.scripted import make_scripted

        return make_scripted(spec.model)
    if spec.in_process_simulator:
        return SimulatedModel(task, parse_sim_model(spec.model), name=spec.model)
    if is_local_model(spec.model):
        raise ModelConfigError(f"{spec.model}: not served: the caller starts its servers first "
                               "(maker.runtime.local_models) and passes the specs it yields", model=spec.model)
    config = LiteLLMConfig(
        model=spec.model,
        api_base=spec.api_base,
        api_bases=spec.api_bases,
        concurrency=spec.concurrency,
        timeout_s=spec.timeout_s,
        rpm=spec.rpm,
        tpm=spec.tpm,
        stop=tuple(optional(task, "stop") or ()),
        price=spec.price,
        # maker's own sim-server derives a seed per choice of an n-request; any other server
        # gets n-requests without a seed (one seed for n choices is what makes servers copy)
        seed_per_choice=spec.api_base is not None and served_by_sim_server(spec.api_base),
    )
    if uses_openai_compatible(spec.model, spec.api_base):  # OpenAI-compatible endpoint: the cheaper client
        return OpenAICompatibleClient(config)
    return LiteLLMClient(config)
