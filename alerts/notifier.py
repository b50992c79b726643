"""The one module that speaks apprise: send one message to one URL; a failure is a value."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise

from alerts.model import Attachment

log = logging.getLogger(__name__)


def _load_plugins() -> None:
    """Load apprise's plugins now, not on the first SOS, and quietly.

    The email plugin imports `imghdr`, deprecated in 3.11 (an apprise matter, not ours).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        apprise.Apprise.instantiate("json://localhost")


_load_plugins()

# Each send on the thread that asks for it (ours), timed by us: with async_mode or a service
# timeout, apprise would hand it to its own process-wide pool of a few threads, which a few
# hung webhooks fill.
_ASSET = apprise.AppriseAsset(async_mode=False, service_timeout=0)

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
    async def send(
        self,
        url: str,
        title: str,
        body: str,
        *,
        critical: bool = False,
        attachments: Sequence[Attachment] = (),
    ) -> Delivery:
        """One attempt; `critical` sends have capacity of their own; `attachments` go where the
        channel can carry files (e-mail) and are left out elsewhere."""
        ...


# Threads per send slot: a send given up at its time limit may still hold its thread until the
# plugin's own socket timeouts end it (connect, then read: up to twice the limit), and that
# must never leave a new send without a thread.
THREADS_PER_SLOT = 3


# Attempts on one channel (a contact's URL) at once: one that hangs holds no more workers.
PER_CHANNEL = 2


@dataclass(slots=True)
class _Lane:
    slots: asyncio.Semaphore
    users: int = 0


class AppriseNotifier:
    """apprise's synchronous notify on threads of this notifier's own, under a hard time limit
    and a concurrency limit, with separate slots and threads for critical sends.

    Not apprise's async_notify: that runs on the event loop's shared default executor (six
    threads on two cores), where a few hung webhooks would hold up every other page, and the
    service's own work on threads too. A fresh apprise object per attempt: plugins keep
    throttle state and are not thread-safe, and building one costs well under a millisecond.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        max_parallel: int,
        max_critical: int = 8,
        per_channel: int = PER_CHANNEL,
    ) -> None:
        self._timeout_s = timeout_s
        self._per_channel = per_channel
        self._channels: dict[str, _Lane] = {}  # only channels with a send under way or waiting
        self._slots = {
            False: asyncio.Semaphore(max_parallel),
            True: asyncio.Semaphore(max_critical),
        }
        self._threads = {
            False: ThreadPoolExecutor(max_parallel * THREADS_PER_SLOT, "notify"),
            True: ThreadPoolExecutor(max_critical * THREADS_PER_SLOT, "notify-critical"),
        }

    async def send(
        self,
        url: str,
        title: str,
        body: str,
        *,
        critical: bool = False,
        attachments: Sequence[Attachment] = (),
    ) -> Delivery:
        started = time.perf_counter()
        target = apprise.Apprise(asset=_ASSET)
        if not target.add(url):
            return Delivery(False, 0.0, f"not a usable apprise URL: {redact(url)}", False)
        _untangle(target[0], self._timeout_s)
        files = attachments if getattr(target[0], "attachment_support", False) else ()
        with _files(files) as attach:
            return await self._send(url, target, title, body, critical, attach, started)

    async def _send(
        self,
        url: str,
        target: apprise.Apprise,
        title: str,
        body: str,
        critical: bool,
        attach: apprise.AppriseAttachment | None,
        started: float,
    ) -> Delivery:
        notify = functools.partial(target.notify, body=body, title=title, attach=attach)
        loop = asyncio.get_running_loop()
        # A channel's own lane first: sends to a channel that hangs wait there, holding at most
        # `per_channel` of the shared slots, so every other channel's page goes on.
        lane = self._channels.get(url)
        if lane is None:
            lane = self._channels[url] = _Lane(asyncio.Semaphore(self._per_channel))
        lane.users += 1
        try:
            async with lane.slots, self._slots[critical]:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        result = await loop.run_in_executor(self._threads[critical], notify)
                except TimeoutError:
                    # The slot is free again now; the thread ends with the plugin's socket
                    # timeout.
                    return Delivery(False, _ms(started), f"no answer within {self._timeout_s:g} s")
                except Exception as exc:  # a plugin bug is a failed delivery, not a crash
                    return Delivery(False, _ms(started), f"{type(exc).__name__}: {exc}")
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._channels[url]
        if result:
            return Delivery(True, _ms(started))
        return Delivery(False, _ms(started), _why(result))

    def close(self) -> None:
        for pool in self._threads.values():
            pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _files(attachments: Sequence[Attachment]) -> Iterator[apprise.AppriseAttachment | None]:
    """The attachments as files in a folder of their own, for apprise, removed afterwards."""
    if not attachments:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bedwatch-attach-") as folder:
        attach = apprise.AppriseAttachment()
        for a in attachments:
            path = Path(folder) / Path(a.name).name  # a bare name, never a path of the sender's
            path.write_bytes(a.content)
            attach.add(str(path))
        yield attach


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
