"""Secrets never reach the store or the logs: the value of every API key a backend read (from the variable its
recipe names, `api_key_env`) and any `Authorization` / `Bearer` header value are cut out of each error text before
it is stored, logged or printed. A server may echo the key in an error body (some proxies do in their 401s)."""

from __future__ import annotations

import json
import os
import re
import threading

from distill.errors import UserError

REDACTED = "<redacted>"
MIN_LENGTH = 4  # shorter values are not secrets worth cutting out of every message (and would mangle them)
_lock = threading.Lock()
_values: set[str] = set()
_HEADERS = [
    # "Authorization: Bearer sk-...", 'authorization': 'Basic ...', "x-api-key=..." (header or JSON forms)
    re.compile(
        r"""(?i)((?:proxy-)?authorization|x-api-key|api[-_]key)(["']?\s*[:=]\s*["']?)(?:(bearer|basic|token)\s+)?"""
        r"""[^\s"',;}\]]+"""
    ),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}"),
]


def register(value: str | None) -> None:
    """Cut `value` out of every later error text (with its JSON-escaped and URL-quoted forms)."""
    if not value or len(value) < MIN_LENGTH:
        return
    from urllib.parse import quote

    with _lock:
        _values.update({value, json.dumps(value)[1:-1], quote(value, safe="")})


def register_env(name: str | None) -> str | None:
    """The value of environment variable `name`, registered as a secret; None where it is unset."""
    value = os.environ.get(name) if name else None
    register(value)
    return value


class ApiKeyError(UserError, ValueError):
    """An API key that cannot be used as it is set."""


def api_key(name: str | None) -> str | None:
    """`register_env(name)`, refusing a value no HTTP header can carry (a character that is not printable ASCII,
    such as a curly quote pasted with the key or a trailing newline) with one line naming the variable and the
    position, never the key."""
    value = register_env(name)
    bad = next((k for k, ch in enumerate(value or "") if not " " <= ch <= "~"), None)
    if bad is not None:
        what = "not ASCII" if not value[bad].isascii() else "a control character"
        raise ApiKeyError(
            f"the API key in ${name} cannot be sent in an HTTP header: its character {bad + 1} of {len(value)} is "
            f"{what}; set the variable to the key alone"
        )
    return value


def redact(text):
    """`text` without any registered secret or header credential; anything but a string comes back as it is."""
    if not isinstance(text, str) or not text:
        return text
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, REDACTED)
    text = _HEADERS[0].sub(lambda m: f"{m[1]}{m[2]}{m[3] + ' ' if m[3] else ''}{REDACTED}", text)
    return _HEADERS[1].sub(lambda m: f"{m[1]} {REDACTED}", text)
