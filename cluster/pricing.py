"""What a model's tokens cost, per million, from the user or from litellm's offline table.

Why its own module: the price decides which model `maker estimate` recommends and whether
a spend cap can be enforced, so where each figure came from is reported next to it, and a
price maker does not know is *unknown* (`Price.known` False), never a silent $0.
litellm's table ships inside the package (`LITELLM_LOCAL_MODEL_COST_MAP=True`), so no
network is needed, and it is only imported when a hosted model without explicit prices is
being priced (the import costs seconds).  The simulator and the embedded model are free.

A provider bills cached prompt tokens (`usage.prompt_tokens_details.cached_tokens`) at
its cache-read rate (litellm's ``cache_read_input_token_cost``: gpt-4.1-mini $0.10 per
million against $0.40), and reasoning tokens as output (they are part of
``completion_tokens``); `Price.cost` does both.

    >>> price_of("sim:0.99")
    Price(input_per_m=0.0, output_per_m=0.0, source='simulated (free)', cached_input_per_m=None, known=True)
    >>> price_of("openai/gpt-4.1-mini", price_in=0.4, price_out=1.6).source
    '--price-in/--price-out'
    >>> round(Price(0.4, 1.6, "x", cached_input_per_m=0.1).cost(2000, 5, cached=1920), 6)
    0.000232
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["FREE_LOCAL", "Price", "price_of"]

#: The source of an unknown price, and what to pass to know it.
UNKNOWN = "unknown: not in litellm's price table (pass --price-in/--price-out)"


def import_litellm() -> Any:
    """Import litellm configured for offline use: local price table, no telemetry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True
    return litellm


@dataclass(frozen=True)
class Price:
    """US dollars per million input, cached-input and output tokens, and where the figures
    came from (`source`, shown next to every figure).  `cached_input_per_m` None: cached
    prompt tokens cost the full input rate.  `known` False: maker does not know this
    model's price; its figures are 0 only as placeholders and are shown as unknown."""

    input_per_m: float
    output_per_m: float
    source: str
    cached_input_per_m: float | None = None
    known: bool = True

    @property
    def cached_per_m(self) -> float:
        """The rate of a cached prompt token (the input rate when none is known)."""
        return self.input_per_m if self.cached_input_per_m is None else self.cached_input_per_m

    @property
    def free(self) -> bool:
        return self.known and self.input_per_m == 0.0 and self.output_per_m == 0.0

    def per_sample(self, tokens_in: float, tokens_out: float, cached: float = 0.0) -> float:
        """USD for these (mean) tokens; `cached` of `tokens_in` at the cache-read rate."""
        return ((tokens_in - cached) * self.input_per_m + cached * self.cached_per_m + tokens_out * self.output_per_m) / 1e6

    def cost(self, tokens_in: int, tokens_out: int, cached: int = 0) -> float:
        """What the provider bills for one response: uncached prompt tokens at the input rate,
        `cached` prompt tokens at the cache-read rate, every completion token (reasoning
        tokens included: providers count them in ``completion_tokens``) at the output rate."""
        cached = max(0, min(cached, tokens_in))
        return self.per_sample(tokens_in, tokens_out, cached)


#: The embedded model (`--model local`): served on this machine, nothing billed.
FREE_LOCAL = Price(0.0, 0.0, "the embedded local model (free)")


def price_of(
    model: str, price_in: float | None = None, price_out: float | None = None, price_cached: float | None = None
) -> Price:
    """The price of `model`: explicit flags first, then free for `sim:`, then litellm's table.

    A model litellm does not know (a local server, a new release) has an unknown price
    (`known` False, source `UNKNOWN`): the estimate of p is still worth having, but no
    figure may pretend it is free.  Flags: both of `price_in`/`price_out` (USD per million
    tokens) make the price the user's; `price_cached` the cache-read rate (default: the input rate).
    """
    if price_in is not None or price_out is not None:
        return Price(float(price_in or 0.0), float(price_out or 0.0), "--price-in/--price-out",
                     None if price_cached is None else float(price_cached))
    if model == "sim" or model.startswith("sim:"):
        return Price(0.0, 0.0, "simulated (free)")
    if model.startswith("script:"):
        return Price(0.0, 0.0, "scripted fake (free)")
    return _table(model)


_TABLE: dict[str, Price] = {}


def _table(model: str) -> Price:
    found = _TABLE.get(model)
    if found is not None:
        return found
    litellm = import_litellm()
    try:
        info = litellm.get_model_info(model=model)
    except Exception:  # litellm raises its own types for unmapped models
        info = None
    # For an unknown name litellm may answer a stub with zero prices (openai/gpt-9-mini):
    # only an entry of its table is a price.
    if not info or info.get("key") not in litellm.model_cost:
        found = Price(0.0, 0.0, UNKNOWN, known=False)
    else:
        rate = info.get("cache_read_input_token_cost")
        found = Price(round(float(info.get("input_cost_per_token") or 0.0) * 1e6, 9),
                      round(float(info.get("output_cost_per_token") or 0.0) * 1e6, 9),
                      "litellm price table (offline)", None if rate is None else round(float(rate) * 1e6, 9))
    _TABLE[model] = found
    return found
