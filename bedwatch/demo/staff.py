"""The demo's care worker: acknowledges and resolves alerts through the service's HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from bedwatch.demo.console_out import AlertEvent, Console, alert_name
from detectors.findings import FindingKind


class CareWorker:
    """Answers alerts of the planned kinds: `plan[kind] = (ack after s, resolve after ack s)`."""

    def __init__(
        self,
        api_url: str,
        token: str,
        console: Console,
        plan: Mapping[FindingKind, tuple[float, float | None]],
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.console = console
        self.plan = plan
        self._due: list[tuple[float, int, str, str]] = []  # (monotonic, alert id, action, kind)
        self._wake = asyncio.Event()

    def on_event(self, event: AlertEvent) -> None:
        if event.action != "opened":
            return
        try:
            timing = self.plan.get(FindingKind(event.kind))
        except ValueError:
            return
        if timing is not None:
            self._push(timing[0], event.alert_id, "ack", event.kind)

    def _push(self, after_s: float, alert_id: int, action: str, kind: str) -> None:
        heapq.heappush(self._due, (time.monotonic() + after_s, alert_id, action, kind))
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            wait = self._due[0][0] - time.monotonic() if self._due else None
            if wait is None or wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            _, alert_id, action, kind = heapq.heappop(self._due)
            status, outcome = await asyncio.to_thread(self._post, alert_id, action)
            if status != 200:
                self.console.event(
                    f"  care worker could not {action} #{alert_id} {alert_name(kind)}: "
                    f"HTTP {status} {outcome}"
                )
                continue
            timing = self.plan.get(FindingKind(kind))
            if action == "ack" and timing is not None and timing[1] is not None:
                self._push(timing[1], alert_id, "resolve", kind)

    def _post(self, alert_id: int, action: str) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{self.api_url}/api/v1/alerts/{alert_id}/{action}",
            method="POST",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, str(json.load(response).get("outcome", ""))
        except urllib.error.HTTPError as exc:
            return exc.code, exc.reason
        except OSError as exc:
            return 0, str(exc)
