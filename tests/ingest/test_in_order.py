"""InOrder: each device's records reach detection once, live in order, late data apart."""

from __future__ import annotations

from collections.abc import Sequence

from ingest.intake import Coverage, InOrder
from ingest.protocol import Decoded
from ingest.records import (
    Channel,
    DeviceEvent,
    DeviceId,
    EpochMs,
    EventType,
    MattressSample,
    Record,
    ResidentId,
    WaveBlock,
)

DEV = DeviceId("mat-0001")
RID = ResidentId("r-0001")
T0 = 1_764_194_465_000


class Sink:
    def __init__(self) -> None:
        self.live: list[int] = []
        self.late: list[list[int]] = []

    def accept(self, records: Sequence[Record], received_at_ms: EpochMs) -> None:
        self.live += [r.ts_ms for r in records]  # type: ignore[union-attr]

    def accept_late(self, records: Sequence[Record], received_at_ms: EpochMs) -> None:
        self.late.append([r.ts_ms for r in records])  # type: ignore[union-attr]

    def tick(self, now_ms: EpochMs) -> None:
        pass


def batch(first_s: int, n: int) -> Decoded:
    """n pad samples, 1 s apart, from T0 + first_s seconds."""
    out = Decoded(T0 + 10**7, "bedwatch/v1/mat-0001/telemetry", b"{}", device_id=DEV)
    out.channel = Channel.TELEMETRY
    out.records = [
        MattressSample(DEV, RID, T0 + 1000 * (first_s + i), 60, 14, 0, 1, 90) for i in range(n)
    ]
    return out


def seconds(first_s: int, n: int) -> list[int]:
    return [T0 + 1000 * (first_s + i) for i in range(n)]


def test_live_data_passes_once_and_redelivery_is_dropped() -> None:
    sink = Sink()
    ordered = InOrder(sink)
    ordered.feed(batch(0, 10))
    ordered.feed(batch(10, 10))
    ordered.feed(batch(0, 10))  # a QoS 1 redelivery
    ordered.feed(batch(5, 10))  # a resend that overlaps both
    assert sink.live == seconds(0, 20)
    assert sink.late == []
    assert ordered.dropped == 20


def test_a_backlog_uploaded_after_live_data_goes_to_the_late_lane_once() -> None:
    sink = Sink()
    ordered = InOrder(sink)
    ordered.feed(batch(0, 10))  # before the outage
    ordered.feed(batch(3600, 10))  # live again an hour later
    for k in range(0, 60, 10):  # the device's buffer, oldest first
        ordered.feed(batch(1000 + k, 10))
    ordered.feed(batch(1020, 10))  # one of those, redelivered
    ordered.feed(batch(3610, 10))  # live goes on
    assert sink.live == seconds(0, 10) + seconds(3600, 20)
    assert sink.late == [seconds(1000 + k, 10) for k in range(0, 60, 10)]
    assert ordered.late == 60
    assert ordered.dropped == 10


def test_a_batch_straddling_the_newest_data_splits_into_late_and_live() -> None:
    sink = Sink()
    ordered = InOrder(sink)
    ordered.feed(batch(100, 10))
    ordered.feed(batch(50, 70))  # 50..119: 50..99 is new past, 100..109 seen, 110..119 new
    assert sink.live == seconds(100, 10) + seconds(110, 10)
    assert sink.late == [seconds(50, 50)]


def test_a_lost_sample_is_not_a_hole_but_a_long_gap_is() -> None:
    cover = Coverage(join_ms=10_000)
    cover.extend(0, 5_000)
    cover.extend(8_000, 20_000)  # 3 s apart: one span
    cover.extend(60_000, 70_000)  # 40 s apart: a hole
    assert cover.starts == [0, 60_000]
    assert cover.covers(6_000)
    assert cover.covers(70_000)
    assert not cover.covers(40_000)
    cover.add(35_000, 40_000)
    assert cover.starts == [0, 35_000, 60_000]
    cover.add(25_000, 55_000)  # touches both neighbours: one span
    assert (cover.starts, cover.ends) == ([0], [70_000])


def test_coverage_keeps_a_bounded_number_of_spans_by_merging_the_oldest() -> None:
    cover = Coverage(join_ms=10)
    for k in range(Coverage.MAX_SPANS + 5):
        cover.extend(1000 * k, 1000 * k + 100)
    assert len(cover.starts) == Coverage.MAX_SPANS
    assert cover.covers(500)  # an old hole is now counted as seen: stored, not analysed
    assert not cover.covers(1000 * (Coverage.MAX_SPANS + 4) - 500)


def test_events_are_judged_by_identity_not_by_order() -> None:
    sink = Sink()
    ordered = InOrder(sink)
    ordered.feed(batch(100, 10))

    def sos(ts: int) -> Decoded:
        out = Decoded(T0, "bedwatch/v1/band-0001/event", b"{}", device_id=DeviceId("band-0001"))
        out.channel = Channel.EVENT
        out.records = [DeviceEvent(DeviceId("band-0001"), RID, ts, EventType.SOS)]
        return out

    ordered.feed(sos(T0 + 200_000))
    ordered.feed(sos(T0))  # older than the live SOS, still a press of its own
    ordered.feed(sos(T0))  # redelivered
    assert sink.live == [*seconds(100, 10), T0 + 200000, T0]


def test_wave_blocks_that_follow_each_other_all_pass() -> None:
    def block(t0: int) -> Decoded:
        out = Decoded(T0, "bedwatch/v1/mat-0001/wave", b"{}", device_id=DEV)
        out.channel = Channel.WAVE
        out.records = [WaveBlock(DEV, RID, t0, 50.0, tuple(range(50)), None, None)]
        return out

    passed: list[Record] = []

    class Waves(Sink):
        def accept(self, records: Sequence[Record], received_at_ms: EpochMs) -> None:
            passed.extend(records)

    ordered = InOrder(Waves())
    for k in range(5):
        ordered.feed(block(T0 + 1000 * k))  # each block starts where the last one ended
    ordered.feed(block(T0 + 2000))  # redelivered
    assert [b.t0_ms for b in passed] == [T0 + 1000 * k for k in range(5)]  # type: ignore[union-attr]
