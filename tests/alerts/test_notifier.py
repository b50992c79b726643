"""The notifier against a real HTTP receiver: a channel that hangs holds up no other channel."""

from __future__ import annotations

import asyncio
import time

from alerts.notifier import PER_CHANNEL, AppriseNotifier
from tests.alerts.receivers import HttpReceiver


def test_pages_to_a_hung_channel_leave_the_critical_slots_to_other_channels(
    http: HttpReceiver,
) -> None:
    # More pages to one channel that never answers than there are critical slots (a ward's
    # presses during a database outage, each paged directly to the same hung care worker).
    notifier = AppriseNotifier(timeout_s=3.0, max_parallel=2, max_critical=4)

    async def scenario() -> tuple[float, int]:
        hung = [
            asyncio.create_task(notifier.send(http.url("hang", "hung"), "SOS", "b", critical=True))
            for _ in range(10)
        ]
        await asyncio.sleep(0.3)  # all of them started or waiting
        started = time.perf_counter()
        ok = await notifier.send(http.url("ok", "staff"), "SOS", "b", critical=True)
        took = time.perf_counter() - started
        assert ok.ok
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
        return took, len(notifier._channels)

    try:
        took, lanes = asyncio.run(scenario())
    finally:
        notifier.close()
    assert took < 1.0  # not after a hung send's 3 s timeout
    assert lanes == 0  # no channel is remembered once nothing is sent to it
    assert PER_CHANNEL < 4
