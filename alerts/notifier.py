"""The one module that speaks apprise: send one message to one URL; a failure is a value."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise

log = logging.getLogger(__name__)


def _load_plugins() -> None:
    """Load apprise's plugins now, not on the first SOS, and quietly.

    The email plugin imports `imghdr`, deprecated in 3.11 (an apprise matter, not ours).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        apprise.Apprise.instantiate("json://localhost")


_load_plugins()

# Query parameters that carry secrets in apprise URLs (tokens, keys, passwords).
_SECRET_PARAMS = re.compile(r"(?i)(pass|secret|token|key|auth|sig|pwd|apikey)")


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one attempt: ok, or an error and whether trying again may help."""

    ok: bool
    duration_ms: float
    error: str = ""
    retryable: bool = True


class Notifier(Protocol):
    async def send(self, url: str, title: str, body: str) -> Delivery: ...


class AppriseNotifier:
    """apprise's async_notify under a timeout and a concurrency limit.

    A fresh apprise object per attempt: plugins keep throttle state and are not thread-safe,
    and building one costs well under a millisecond.
    """

    def __init__(self, *, timeout_s: float, max_parallel: int) -> None:
        self._timeout_s = timeout_s
        self._limit = asyncio.Semaphore(max_parallel)

    async def send(self, url: str, title: str, body: str) -> Delivery:
        started = time.perf_counter()
        target = apprise.Apprise()
        if not target.add(url):
            return Delivery(False, 0.0, f"not a usable apprise URL: {redact(url)}", False)
        _untangle(target[0], self._timeout_s)
        async with self._limit:
            try:
                async with asyncio.timeout(self._timeout_s):
                    result = await target.async_notify(
                        body=body, title=title, timeout=self._timeout_s
                    )
            except TimeoutError:
                return Delivery(False, _ms(started), f"no answer within {self._timeout_s:g} s")
            except Exception as exc:  # a plugin bug is a failed delivery, not a crash
                return Delivery(False, _ms(started), f"{type(exc).__name__}: {exc}")
        if result:
            return Delivery(True, _ms(started))
        return Delivery(False, _ms(started), _why(result))


def _untangle(plugin: Any, timeout_s: float) -> None:
    """No throttle between sends (the email plugin waits 5.5 s); socket timeouts of ours."""
    plugin.request_rate_per_sec = 0
    plugin.socket_connect_timeout = timeout_s
    plugin.socket_read_timeout = timeout_s


def _why(result: Any) -> str:
    messages = [str(getattr(entry, "message", entry)) for entry in result.logs()]
    text = "; ".join(m for m in messages if m) or f"apprise status {result.status.name}"
    return text[:500]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def redact(url: str) -> str:
    """The URL with passwords, tokens and keys replaced, fit for logs and the outbox."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, host = parts.netloc.rpartition("@")
    if len(host) >= 20 and "." not in host:
        host = "***"  # a bot key in the host's place (wecombot://KEY)
    if at:
        user = userinfo.split(":", 1)[0]
        userinfo = f"{user}:***" if ":" in userinfo else "***"
    netloc = f"{userinfo}@{host}" if at else host
    query = urlencode(
        [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in parse_qsl(parts.query)],
        safe="*@",
    )
    # Webhook bots carry their token in the path (WeCom, DingTalk, ...): keep only the first part.
    segments = parts.path.split("/")
    path = "/".join(s if len(s) < 20 else "***" for s in segments)
    return urlunsplit((parts.scheme, netloc, path, query, ""))
