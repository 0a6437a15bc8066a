"""What a model's tokens cost, per million, from the user or from litellm's offline table.

Why its own module: the price decides which model `maker estimate` recommends, so
where each figure came from is reported next to it.  litellm's table ships inside the
package (`LITELLM_LOCAL_MODEL_COST_MAP=True`), so no network is needed, and it is
only imported when a hosted model without explicit prices is being priced (the import
costs seconds).  The simulator is free.

    >>> price_of("sim:0.99")
    Price(input_per_m=0.0, output_per_m=0.0, source='simulated (free)')
    >>> price_of("openai/gpt-4.1-mini", price_in=0.4, price_out=1.6).source
    '--price-in/--price-out'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["Price", "price_of"]


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
    """US dollars per million input and output tokens, and where the figures came from."""

    input_per_m: float
    output_per_m: float
    source: str

    def per_sample(self, tokens_in: float, tokens_out: float) -> float:
        return tokens_in * self.input_per_m / 1e6 + tokens_out * self.output_per_m / 1e6


def price_of(model: str, price_in: float | None = None, price_out: float | None = None) -> Price:
    """The price of `model`: explicit flags first, then free for `sim:`, then litellm's table.

    A model litellm does not know (a local server, a new release) is priced at 0 with a
    source that says so, rather than failing: the estimate of p is still worth having.
    """
    if price_in is not None or price_out is not None:
        return Price(float(price_in or 0.0), float(price_out or 0.0), "--price-in/--price-out")
    if model == "sim" or model.startswith("sim:"):
        return Price(0.0, 0.0, "simulated (free)")
    litellm = import_litellm()
    try:
        cost_in, cost_out = litellm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000)
    except Exception:  # litellm raises its own types for unmapped models
        return Price(0.0, 0.0, "not in litellm's price table: counted as 0 (pass --price-in/--price-out)")
    return Price(round(float(cost_in), 9), round(float(cost_out), 9), "litellm price table (offline)")
