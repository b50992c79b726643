"""The detector entry point: where ingest hands on decoded records, before they are stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ingest.records import EpochMs, Record


class RecordSink(Protocol):
    """What ingest calls with every accepted record; `detectors/` implements it.

    All methods are called from the service's event loop thread, never concurrently, and must
    not block: they run between messages. For each device, `accept` sees records in device-time
    order, each at most once per service run: a redelivered record (inside a span of device time
    already handed on for that device and channel) is stored but not handed on again.
    """

    def accept(self, records: Sequence[Record], received_at_ms: EpochMs) -> None:
        """Records decoded from one MQTT message (a batch keeps its order)."""

    def accept_late(self, records: Sequence[Record], received_at_ms: EpochMs) -> None:
        """Late records of one device channel, in device-time order.

        Older than data already handed on, in a span of time nothing covered: a store-and-forward
        backlog uploaded after the device's live data. They are about the past, so they must not
        disturb what `accept` is following now.
        """

    def tick(self, now_ms: EpochMs) -> None:
        """The service clock, about once a second: only `device_silent` may use it (and the
        wait for late data to settle, which is about receive time too)."""
