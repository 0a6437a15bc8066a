"""Keep API keys out of everything maker writes: step logs, errors, stderr, --json output.

Provider errors sometimes quote the key they were given ("Incorrect API key provided:
sk-..."), and an error string goes into the step log.  So every error text that leaves
a client passes through `redact`, which removes the values of secret-looking environment
variables, any key passed in explicitly, and anything shaped like a provider key or
written as a credential (``Authorization: Bearer ...``, ``api_key=...``).

A server or a library rarely echoes a key as it was sent: a JSON body escapes ``/`` as
``\\/`` or any character as ``\\u002f``, a URL percent-encodes ``+ / = %`` (twice, when a
URL sits inside a URL), HTML writes ``&#47;``, a header or a log shows it in base64 (alone,
or inside a longer base64 text such as ``Basic base64(user:key)``) or as hex bytes.  So a
secret is matched in every such form, each character in any of its encodings (`_pattern`),
and its base64 and hex forms are matched at any alignment (`_encoded_forms`).

    >>> import os; os.environ["DEMO_API_KEY"] = "gw/Ab+cd=SECRET1234"
    >>> redact('{"error": "bad key gw\\\\/Ab+cd=SECRET1234"} or gw%2FAb%2Bcd%3DSECRET1234')
    '{"error": "bad key [REDACTED]"} or [REDACTED]'
    >>> del os.environ["DEMO_API_KEY"]
"""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TextIO

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
_KEY_SHAPED = re.compile(r"\b(sk|pk|rk|ak|xai|gsk|hf)[-_][A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}")
#: A credential's value: URL-safe and base64 characters, percent escapes (not quotes, spaces, separators).
_VALUE = r"[A-Za-z0-9._~+/=%\-]{8,}"
#: ``Bearer <token>`` / ``Basic <base64>`` (an Authorization header, as a log or an error may quote it).
_BEARER = re.compile(r"((?:Bearer|Basic)\s+)" + _VALUE, re.IGNORECASE)
#: ``api_key=...``, ``"x-api-key": "..."``, ``?key=...``, ``access_token: ...``: a credential by its name.
_NAMED = re.compile(
    r"((?:\b(?:x-)?api[-_]?key|\baccess[-_]token|\bclient[-_]secret|\bpassword|[?&]key)[\"']?\s*[:=]\s*[\"']?)" + _VALUE,
    re.IGNORECASE,
)
#: A password in a URL: ``https://user:PASSWORD@host/v1`` (an api_base may carry one).
_USERINFO = re.compile(r"(://[^/\s:@\[\]]+:)[^/\s@]+(?=@)")
REDACTED = "[REDACTED]"
#: Values shorter than this are not hidden: they would hide ordinary words and numbers.
MIN_SECRET_CHARS = 8


def secret_values(extra: Iterable[str | None] = ()) -> list[str]:
    """Values worth hiding: secret-named environment variables and any given keys."""
    values = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and v and len(v) >= MIN_SECRET_CHARS]
    values += [v for v in extra if v and len(v) >= MIN_SECRET_CHARS]
    return sorted(set(values), key=len, reverse=True)


def _char_forms(c: str) -> str:
    """A regex for one character of a secret in any encoding a server or library may write it
    in: as is, backslash-escaped (``\\/``, ``\\\\/``), a JSON or Python escape (``\\u002F``,
    ``\\x2f``), percent-encoded once or more (``%2F``, ``%252F``), an HTML entity (``&#47;``)."""
    code = ord(c)
    forms = [re.escape(c), r"\\+" + re.escape(c), r"(?i:\\+u0*" + f"{code:x})", r"(?i:%(?:25)*" + f"{code:02x})",
             f"&#0*{code};", f"(?i:&#x0*{code:x};)"]
    if code < 0x100:
        forms.append(r"(?i:\\+x" + f"{code:02x})")
    if c == " ":
        forms.append(r"\+")  # a form-encoded space
    return "(?:" + "|".join(forms) + ")"


def _encoded_forms(value: str) -> list[str]:
    """The secret's base64 (standard and URL-safe) and hex forms, as substrings that appear in
    any longer base64 or hex text holding it, whatever its alignment: for base64, the
    characters that only the secret's own bits decide (``Basic base64("user:" + key)`` holds
    one of them)."""
    raw = value.encode("utf-8", "surrogatepass")
    out = {raw.hex(), raw.hex().upper()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        start = -(-8 * shift // 6)  # the first character made of the secret's bits only
        end = 8 * (shift + len(raw)) // 6  # past the last such character
        core = encoded[start:end]
        if len(core) >= MIN_SECRET_CHARS:
            out.add(core)
            out.add(core.replace("+", "-").replace("/", "_"))
    return sorted(out, key=len, reverse=True)


@lru_cache(maxsize=64)
def _pattern(value: str) -> re.Pattern[str]:
    """One regex for every form of `value` (`_char_forms` per character, `_encoded_forms`)."""
    per_char = "".join(_char_forms(c) for c in value)
    encoded = [re.escape(form) for form in _encoded_forms(value)]
    return re.compile("|".join([per_char, *encoded]))


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with every secret, in any encoding, replaced by [REDACTED]."""
    for value in secret_values(extra):
        text = _pattern(value).sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _NAMED.sub(lambda m: m.group(1) + REDACTED, text)
    text = _USERINFO.sub(lambda m: m.group(1) + REDACTED, text)
    return _KEY_SHAPED.sub(REDACTED, text)


class RedactingStream:
    """A text stream that passes everything written to it through `redact`, a line at a time
    (a secret split across two writes of one line is still found); what is left of a line is
    written on `flush`.  Everything else (``fileno``, ``isatty``, ``encoding``) is the
    wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._line = ""

    def write(self, text: str) -> int:
        self._line += text
        if "\n" in self._line:
            done, _, self._line = self._line.rpartition("\n")
            self.stream.write(redact(done + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._line:
            self.stream.write(redact(self._line))
            self._line = ""
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def redacted_stderr() -> Iterator[None]:
    """`sys.stderr` through `RedactingStream` while the block runs: what a library prints or
    logs there (litellm's messages, a traceback quoting a provider's error) loses its keys too."""
    original = sys.stderr
    wrapper = RedactingStream(original)
    sys.stderr = wrapper
    try:
        yield
    finally:
        wrapper.flush()
        if sys.stderr is wrapper:
            sys.stderr = original
