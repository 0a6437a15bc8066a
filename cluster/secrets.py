"""Keep API keys out of everything maker writes: step logs, errors, --json output.

Provider errors sometimes quote the key they were given ("Incorrect API key provided:
sk-..."), and an error string goes into the step log.  So every error text that leaves
a client passes through `redact`, which removes the values of secret-looking environment
variables, any key passed in explicitly, and anything shaped like a provider key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
_KEY_SHAPED = re.compile(r"\b(sk|pk|rk|ak|xai|gsk|hf)[-_][A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]{8,}", re.IGNORECASE)
REDACTED = "[REDACTED]"


def secret_values(extra: Iterable[str | None] = ()) -> list[str]:
    """Values worth hiding: secret-named environment variables and any given keys."""
    values = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 8]
    values += [v for v in extra if v and len(v) >= 8]
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with every secret replaced by [REDACTED]."""
    for value in secret_values(extra):
        if value in text:
            text = text.replace(value, REDACTED)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _KEY_SHAPED.sub(REDACTED, text)
