"""Feeds' webhooks: one CloudEvent POSTed to one URL on threads of our own; a failure is a value."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from typing import IO, Protocol

from alerts.notifier import THREADS_PER_SLOT, Delivery

# CloudEvents' structured content mode over HTTP: the whole event is the body.
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
# Answers worth trying again besides 5xx; any other 4xx says the request itself is wrong.
RETRYABLE_STATUS = frozenset({408, 425, 429})
_READ_MAX = 65_536  # of an answer's body: read only to let the connection close cleanly


class Poster(Protocol):
    async def post(self, url: str, body: str) -> Delivery:
        """One attempt: `body` (a CloudEvent) POSTed to `url`."""
        ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that answers with a redirect has failed: urllib would turn the POST into a GET
    without the event."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, timeout_s: float) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "User-Agent": "BedWatch"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(_READ_MAX)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


class WebhookPoster:
    """Plain HTTP POSTs under a hard time limit and a concurrency limit, on threads of their own:
    a feed's receiver that hangs holds up no page to a person (those have the notifier's)."""

    def __init__(self, *, timeout_s: float, max_parallel: int) -> None:
        self._timeout_s = timeout_s
        self._max_parallel = max_parallel
        self._slots = asyncio.Semaphore(max_parallel)
        self._threads: ThreadPoolExecutor | None = None  # made at the first post

    async def post(self, url: str, body: str) -> Delivery:
        started = time.perf_counter()
        status, error = await self._attempt(url, body.encode())
        took_ms = (time.perf_counter() - started) * 1000
        if 200 <= status < 300:
            return Delivery(True, took_ms)
        if status:
            retryable = status >= 500 or status in RETRYABLE_STATUS
            return Delivery(False, took_ms, f"HTTP {status}", retryable)
        return Delivery(False, took_ms, error)

    async def _attempt(self, url: str, body: bytes) -> tuple[int, str]:
        """The HTTP status, or 0 and why there is none (each worth trying again)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self._max_parallel * THREADS_PER_SLOT, "webhook")
        loop = asyncio.get_running_loop()
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout_s):
                    return await loop.run_in_executor(
                        self._threads, _post, url, body, self._timeout_s
                    ), ""
            except TimeoutError:
                # The slot is free again; the thread ends with its socket timeout.
                return 0, f"no answer within {self._timeout_s:g} s"
            except OSError as exc:  # refused, reset, unreachable (URLError is one)
                reason = getattr(exc, "reason", None) or exc
                return 0, f"{type(exc).__name__}: {reason}"[:500]

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
