"""The detectors behind ingest's RecordSink: records in; findings, samples, summaries out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from detectors import silence, snapshot
from detectors.baseline import judge_night
from detectors.events import battery, step_band_housekeeping, step_event
from detectors.findings import Finding
from detectors.nights import NightSummary, close_night
from detectors.pad import run_pad
from detectors.pauses import step_wave_pause
from detectors.settings import ResidentConfig
from detectors.state import MattressState, ResidentState
from detectors.vitals import step_wristband
from detectors.wavestream import append, restart, window
from ingest.records import (
    DeviceEvent,
    DeviceId,
    DeviceKind,
    DeviceStatus,
    MattressSample,
    Record,
    ResidentId,
    SampleSource,
    StatusState,
    WaveBlock,
    WristbandSample,
    time_of,
)

log = logging.getLogger(__name__)


# A resident's late data is analysed once none has come for this long (receive time), so that a
# backlog uploaded in many messages, in whatever order, is analysed whole and in time order.
LATE_SETTLE_MS = 5_000
LATE_MAX_RECORDS = 100_000  # held for one resident at most; analysed at once past that


@dataclass(slots=True)
class LateBacklog:
    """A resident's late records (a store-and-forward backlog) waiting to be analysed."""

    records: list[Record]
    last_rx_ms: int


class DetectorRunner:
    """One state per resident, advanced by records in device time (and `tick` for silence).

    Synchronous and non-blocking, as ingest's RecordSink asks. Findings go to `on_finding` in
    the order they are decided; samples computed from waveforms to `on_derived` (ingest stores
    them with source `wave`); closed nights to `on_summary`.

    `accept` takes the records in runs of one device (a message is one run): the resident's
    settings, state and the device's liveness are looked up once a run, and a run of pad
    samples goes through every pad detector in one loop (`detectors.pad`). What is found, and
    in which order, is what the records one at a time would give.

    Late data (`accept_late`, and after a restart records older than the restored state) is
    held per resident until it settles, then sorted and run through a state of its own that
    starts empty: the vitals, pauses, exits and immobility in it are found as they would have
    been live, and the findings are marked `late`. That touches nothing of the live state: not
    device silence, not the night being summarised, not the open episodes.
    """

    def __init__(
        self,
        *,
        residents: Mapping[ResidentId, ResidentConfig],
        on_finding: Callable[[Finding], None],
        on_derived: Callable[[Sequence[MattressSample]], None],
        on_summary: Callable[[NightSummary], None] | None = None,
    ) -> None:
        self._residents: dict[ResidentId, ResidentConfig] = {}
        self._states: dict[ResidentId, ResidentState] = {}
        self._late: dict[ResidentId, LateBacklog] = {}
        self._received_ms = 0  # of the records being accepted
        self._on_finding = on_finding
        self._on_derived = on_derived
        self._on_summary = on_summary
        self.set_residents(residents)

    def set_residents(self, residents: Mapping[ResidentId, ResidentConfig]) -> None:
        """A reloaded registry: new settings apply from the next record; state is kept."""
        self._residents = dict(residents)

    def accept(self, records: Sequence[Record], received_at_ms: int) -> None:
        self._received_ms = received_at_ms
        for config, run in self._runs(records):
            rid = config.resident_id
            state = self._states.get(rid)
            if state is None:
                state = self._states[rid] = ResidentState()
            self._run(config, state, run, received_at_ms)

    def _runs(self, records: Sequence[Record]) -> Iterator[tuple[ResidentConfig, Sequence[Record]]]:
        """The records in runs of one device, resident and type (a message is one run), each
        with its resident's settings; records of unknown residents left out."""
        n = len(records)
        i = 0
        while i < n:
            first = records[i]
            device, rid, kind = first.device_id, first.resident_id, type(first)
            j = i + 1
            while j < n:
                record = records[j]
                if (
                    record.device_id != device
                    or record.resident_id != rid
                    or type(record) is not kind
                ):
                    break
                j += 1
            config = self._residents.get(rid) if rid is not None else None
            if config is not None:
                yield config, records if j - i == n else records[i:j]
            i = j

    def accept_late(self, records: Sequence[Record], received_at_ms: int) -> None:
        for record in records:
            config = self._config_of(record)
            if config is not None:
                self._hold_late(config.resident_id, record, received_at_ms)

    def _hold_late(self, rid: ResidentId, record: Record, received_at_ms: int) -> None:
        backlog = self._late.get(rid)
        if backlog is None:
            backlog = self._late[rid] = LateBacklog([], received_at_ms)
        backlog.records.append(record)
        backlog.last_rx_ms = received_at_ms
        if len(backlog.records) >= LATE_MAX_RECORDS:
            self._analyse_late(rid)

    def analyse_late(self, now_ms: int | None = None) -> None:
        """Analyse the held late data that has settled by `now_ms` (all of it if None)."""
        settled = [
            rid
            for rid, backlog in self._late.items()
            if now_ms is None or now_ms - backlog.last_rx_ms >= LATE_SETTLE_MS
        ]
        for rid in settled:
            self._analyse_late(rid)

    def _analyse_late(self, rid: ResidentId) -> None:
        backlog = self._late.pop(rid)
        config = self._residents.get(rid)
        if config is None:
            return
        state = ResidentState()
        for _, run in self._runs(sorted(backlog.records, key=time_of)):
            self._late_run(config, state, run)

    def _config_of(self, record: Record) -> ResidentConfig | None:
        rid = record.resident_id
        return self._residents.get(rid) if rid is not None else None

    def tick(self, now_ms: int) -> None:
        """The service clock: devices not heard from for their limit are silent, and late data
        that has settled is analysed."""
        if self._late:
            self.analyse_late(now_ms)
        for rid, config in self._residents.items():
            state = self._states.get(rid)
            if state is None:
                state = self._states[rid] = ResidentState()
            s = config.settings
            for device_id, kind in config.devices.items():
                limit = s.mattress_silent_s if kind is DeviceKind.MATTRESS else s.wristband_silent_s
                found = silence.tick(state.liveness(device_id), rid, device_id, now_ms, limit)
                if found:
                    self._silenced(state, device_id)
                for finding in found:
                    self._on_finding(finding)

    def close_nights(self) -> None:
        """Summarise every open night now (the end of a replay), instead of at its end time;
        analyse the late data still held."""
        self.analyse_late()
        for rid, state in self._states.items():
            config = self._residents.get(rid)
            if config is None or state.night.from_ms < 0:
                continue
            summary = close_night(state.night, rid, config.settings)
            for finding in self._judge(summary, state, summary.to_ms, config):
                self._on_finding(finding)

    def snapshot(self) -> bytes:
        return snapshot.dumps({str(rid): state for rid, state in self._states.items()})

    def resume(self, now_ms: int) -> None:
        """After a restore: the service's own downtime is not the devices' silence.

        Their messages waited at the broker meanwhile, so each device's silence clock starts
        again now instead of firing at the first tick for every device at once.
        """
        for state in self._states.values():
            for live in state.silence.values():
                if not live.silent:
                    live.last_rx_ms = max(live.last_rx_ms, now_ms)

    def restore(self, blob: bytes) -> None:
        states = snapshot.loads(blob, ResidentState)
        self._states = {ResidentId(rid): st for rid, st in states.items()}
        log.info("detector state restored for %d residents", len(states))

    def _run(
        self, config: ResidentConfig, r: ResidentState, run: Sequence[Record], received_at_ms: int
    ) -> None:
        """One run of records (one device, one type) in the live state."""
        emit = self._on_finding
        kind = type(run[0])
        if kind is DeviceStatus:
            for status in run:
                for finding in self._status(config, r, status, received_at_ms):  # type: ignore[arg-type]
                    emit(finding)
            return
        device_id = run[0].device_id
        live = r.liveness(device_id)
        if live.silent:
            for finding in silence.heard(live, config.resident_id, device_id, received_at_ms):
                emit(finding)
        live.last_rx_ms = max(live.last_rx_ms, received_at_ms)
        if kind is MattressSample:
            m = self._pad(r, device_id, run)  # type: ignore[arg-type]
            if m is not None:
                run_pad(
                    r,
                    m,
                    run,  # type: ignore[arg-type]
                    config,
                    emit=emit,
                    behind=self._behind,
                    night_closed=self._night_closed,
                )
            return
        for record in run:
            if kind is WaveBlock:
                out = self._wave(config, r, record)  # type: ignore[arg-type]
            elif kind is WristbandSample:
                out = self._band(config, r, record)  # type: ignore[arg-type]
            elif kind is DeviceEvent:
                assert isinstance(record, DeviceEvent)
                out = step_event(r, r.band(record.device_id), record, config.settings)
            else:
                out = []
            for finding in out:
                emit(finding)

    def _late_run(self, config: ResidentConfig, r: ResidentState, run: Sequence[Record]) -> None:
        """One run of late records in a late analysis' own state: findings marked late.

        Status and events are not late data: liveness is about now, and events have their
        own identity check in ingest. Battery and strap housekeeping speak of the device now."""

        def emit(finding: Finding) -> None:
            self._on_finding(replace(finding, late=True))

        kind = type(run[0])
        if kind is MattressSample:
            m = self._pad(r, run[0].device_id, run)  # type: ignore[arg-type]
            if m is not None:
                run_pad(r, m, run, config, emit=emit, behind=None, night_closed=None)  # type: ignore[arg-type]
            return
        for record in run:
            if kind is WaveBlock:
                out = self._wave(config, r, record)  # type: ignore[arg-type]
            elif kind is WristbandSample:
                out = self._band(config, r, record, live=False)  # type: ignore[arg-type]
            else:
                out = []
            for finding in out:
                emit(finding)

    @staticmethod
    def _pad(
        r: ResidentState, device_id: DeviceId, run: Sequence[MattressSample]
    ) -> MattressState | None:
        """The pad's state; created at its first sample of its own (not at derived ones)."""
        m = r.mattresses.get(device_id)
        if m is None and any(sample.source is SampleSource.DEVICE for sample in run):
            m = r.mattress(device_id)
        return m

    def _behind(self, sample: Record) -> None:
        """A sample not after the last of its device in the live state: ingest hands on each
        device's records in order within a run, so this is data older than the state restored
        after a restart. Late data, not lost data."""
        assert sample.resident_id is not None
        self._hold_late(sample.resident_id, sample, self._received_ms)

    def _night_closed(self, summary: NightSummary, at_ms: int) -> list[Finding]:
        rid = summary.resident_id
        return self._judge(summary, self._states[rid], at_ms, self._residents[rid])

    def _band(
        self,
        config: ResidentConfig,
        r: ResidentState,
        sample: WristbandSample,
        *,
        live: bool = True,
    ) -> list[Finding]:
        """`live`: the live state (else a late analysis: no housekeeping, nothing held back)."""
        b = r.band(sample.device_id)
        if sample.ts_ms <= b.last_ts_ms:
            if live:
                self._behind(sample)
            return []
        b.last_ts_ms = sample.ts_ms
        # With a pad, the band's heart rate counts in bed only, as docs/design.md asks; with every
        # pad silent or offline, nothing says where the resident is and the band is the only eye.
        pads_dark = all(r.liveness(d).silent for d in config.pads)
        in_bed = r.in_bed or pads_dark
        out = step_wristband(r, b, sample, config.settings, in_bed=in_bed)
        if live:
            out += step_band_housekeeping(b, sample, config.settings)
        return out

    def _wave(self, config: ResidentConfig, r: ResidentState, block: WaveBlock) -> list[Finding]:
        samples = block.raw if block.raw is not None else block.resp
        if not samples or block.fs_hz <= 0:
            return []
        m = r.mattress(block.device_id)
        w = m.wave
        channel = "raw" if block.raw is not None else "resp"
        slack_ms = max(20.0, 1500.0 / block.fs_hz)
        if (
            w.buf is None
            or w.fs_in != block.fs_hz
            or w.channel != channel
            or abs(block.t0_ms - w.next_t0_ms) > slack_ms
        ):
            restart(w, block.fs_hz, channel, block.t0_ms)
        append(w, samples, block.bcg if channel == "resp" else None)
        if m.occ == 1:
            r.night.wave_in_bed_ms += int(len(samples) * 1000 / block.fs_hz)
        est = window(w)
        if est is None:
            return []
        rid = config.resident_id
        derived = MattressSample(
            device_id=block.device_id,
            resident_id=rid,
            ts_ms=int(w.end_ms),
            hr=est.hr_bpm,
            rr=est.rr_per_min,
            move=round(100 * est.movement_fraction),
            occ=m.occ,
            sq=est.quality,
            source=SampleSource.WAVE,
        )
        self._on_derived([derived])
        return step_wave_pause(r, m, block.device_id, rid, est, config.settings)

    def _status(
        self, config: ResidentConfig, r: ResidentState, status: DeviceStatus, received_at_ms: int
    ) -> list[Finding]:
        rid, device_id = config.resident_id, status.device_id
        live = r.liveness(device_id)
        if status.state is StatusState.OFFLINE:
            out = silence.went_offline(live, rid, device_id, received_at_ms)
            if out:
                self._silenced(r, device_id)
            return out
        out = silence.heard(live, rid, device_id, received_at_ms)
        if status.bat is not None and device_id in r.bands:
            out += battery(
                rid, r.bands[device_id], status.bat, status.ts_ms, device_id, config.settings
            )
        return out

    def _silenced(self, r: ResidentState, device_id: DeviceId) -> None:
        """A silent device's unfinished runs are no evidence: they must not fire later."""
        m: MattressState | None = r.mattresses.get(device_id)
        if m is not None:
            for episode in m.episodes():
                episode.drop_pending()
            m.wave.next_t0_ms = -1.0
            m.wave.last_breath_ms = -1
            m.wave.buf = None
        b = r.bands.get(device_id)
        if b is not None:
            for episode in b.episodes():
                episode.drop_pending()
            b.spo2_prev_level = -1

    def _judge(
        self, summary: NightSummary, r: ResidentState, at_ms: int, config: ResidentConfig
    ) -> list[Finding]:
        if self._on_summary is not None:
            self._on_summary(summary)
        return judge_night(summary, r.history, at_ms, config.settings)
