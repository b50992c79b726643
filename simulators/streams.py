"""The messages one device publishes over a window, in send order, built chunk by chunk."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from simulators.faults import Fault, FaultKind, Message, malformed_payload
from simulators.scenarios import Role
from simulators.vitals import CHUNK_S, Vitals
from simulators.wave import WaveMode, WaveState, render_wave

if TYPE_CHECKING:
    from simulators.night import Night

MODELS = {Role.MATTRESS: ("BW-M1", "2.4.1"), Role.WRISTBAND: ("BW-B2", "1.7.0")}
BAND_DRAIN_PCT_H = 0.6
STEPS_PER_S_UP = 0.08  # an old person pottering about: ~300 steps an hour out of bed
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_REBOOT = ""  # a marker in the send queue, not a message


@dataclass(order=True, slots=True)
class _Pending:
    """A message waiting for its send time; seq is given when it leaves, in send order."""

    at_ms: int
    order: int
    channel: str = field(compare=False)
    body: dict[str, Any] | bytes = field(compare=False)  # bytes: already final (malformed)
    retain: bool = field(compare=False, default=False)


@dataclass(slots=True)
class _Device:
    """Mutable state of one device while its stream is produced."""

    night: Night
    role: Role
    device_id: str
    phase_ms: int  # devices sample on their own clock, not on whole seconds
    seq: dict[str, int] = field(default_factory=dict)
    boot: int = 1
    heap: list[_Pending] = field(default_factory=list)
    order: int = 0

    def push(
        self, at_ms: int, channel: str, body: dict[str, Any] | bytes, retain: bool = False
    ) -> None:
        self.order += 1
        heapq.heappush(self.heap, _Pending(at_ms, self.order, channel, body, retain))

    def pop_until(self, limit_ms: int | None) -> Iterator[Message]:
        while self.heap and (limit_ms is None or self.heap[0].at_ms < limit_ms):
            p = heapq.heappop(self.heap)
            if p.channel == _REBOOT:
                self.seq.clear()  # seq counts messages since boot
                continue
            yield self._message(p)

    def _message(self, p: _Pending) -> Message:
        if isinstance(p.body, bytes):
            return Message(p.at_ms, self.device_id, p.channel, p.body, 1, p.retain)
        if "state" not in p.body or p.body["state"] == "online":
            seq = self.seq.get(p.channel, 0)
            self.seq[p.channel] = seq + 1
            payload = orjson.dumps({"seq": seq, **p.body}, option=_NUMPY)
        else:
            payload = orjson.dumps(p.body, option=_NUMPY)
        return Message(p.at_ms, self.device_id, p.channel, payload, 1, p.retain)

    def next_seq(self, channel: str) -> int:
        seq = self.seq.get(channel, 0)
        self.seq[channel] = seq + 1
        return seq


def device_stream(night: Night, role: Role, broker_will: bool) -> Iterator[Message]:
    """All messages of one device over the night's window, ordered by send time."""
    device_id = night.devices.mattress_id if role is Role.MATTRESS else night.devices.wristband_id
    rng = np.random.default_rng([*night.seed_key, 3, int(role is Role.WRISTBAND)])
    dev = _Device(night, role, device_id, int(rng.integers(0, 1000)))
    outages = [f for f in night.script.faults if f.kind is FaultKind.OFFLINE and f.role is role]
    first_s = (night.start_ms - night.plan.origin_ms) // 1000
    _status(dev, night.start_ms, 100 if role is Role.MATTRESS else night.battery_at(first_s))
    writer = _MattressWriter(dev) if role is Role.MATTRESS else _BandWriter(dev)
    for chunk in night.chunks():
        v = night.vitals(chunk)
        writer.add(v, outages)
        _extras(dev, v, outages, broker_will)
        yield from dev.pop_until(night.plan.ms(int(v.second[-1]) + 1))
    yield from dev.pop_until(None)


def _status(dev: _Device, ts_ms: int, bat: int) -> None:
    model, fw = MODELS[dev.role]
    body = {
        "state": "online",
        "ts": ts_ms,
        "kind": str(dev.role),
        "model": model,
        "fw": fw,
        "bat": bat,
        "boot": dev.boot,
    }
    dev.push(ts_ms, "status", body, retain=True)


def _offline(outages: list[Fault], second: float) -> bool:
    return any(f.covers(second) for f in outages)


def _extras(dev: _Device, v: Vitals, outages: list[Fault], broker_will: bool) -> None:
    """Scripted events, malformed messages, power cuts and returns that fall in this chunk."""
    night, lo, hi = dev.night, int(v.second[0]), int(v.second[-1]) + 1
    for e in night.script.events:
        mine = e.role is dev.role and lo <= e.second < hi and night.in_window(e.second)
        if mine and not _offline(outages, e.second):
            ts = night.device_ms(dev.role, e.second)
            body = {"ts": ts, "type": e.type, **e.fields}
            dev.push(night.plan.ms(0) + int(e.second * 1000) + 40, "event", body)
    for bad in night.script.malformed:
        if bad.role is dev.role and lo <= bad.second < hi and night.in_window(bad.second):
            ts = night.device_ms(dev.role, bad.second)
            channel, payload = malformed_payload(
                bad.variant, dev.role, dev.next_seq("telemetry"), ts
            )
            dev.push(night.plan.ms(0) + int(bad.second * 1000), channel, payload)
    for f in outages:
        _outage_edges(dev, f, lo, hi, broker_will)


def _outage_edges(dev: _Device, f: Fault, lo: int, hi: int, broker_will: bool) -> None:
    night = dev.night
    will_s = f.start_s + 1.5 * night.options.keepalive_s
    if broker_will and lo <= will_s < hi and (f.end_s is None or will_s < f.end_s):
        dev.push(night.plan.ms(0) + int(will_s * 1000), "status", {"state": "offline"}, retain=True)
    if f.end_s is not None and lo <= f.end_s < hi and night.in_window(f.end_s):
        dev.boot += 1  # power back: firmware boots, seq restarts, status online again
        dev.push(night.plan.ms(0) + f.end_s * 1000 - 1, _REBOOT, b"")
        bat = 100 if dev.role is Role.MATTRESS else night.battery_at(f.end_s)
        _status(dev, night.device_ms(dev.role, f.end_s), bat)


class _MattressWriter:
    def __init__(self, dev: _Device) -> None:
        self.dev = dev
        night = dev.night
        self.batch = night.options.batch
        self.batch_phase = dev.phase_ms % self.batch
        self.pending: list[dict[str, Any]] = []
        self.pending_id = -1
        self.last_ms = 0
        self.wave = WaveState()
        self.wave_on = night.options.wave is not WaveMode.OFF

    def add(self, v: Vitals, outages: list[Fault]) -> None:
        night, dev = self.dev.night, self.dev
        ts0 = night.plan.origin_ms + dev.phase_ms
        true_ms = (ts0 + v.second * 1000).tolist()
        ts = night.skewed(dev.role, v.second, np.asarray(true_ms)).tolist()
        hr = _nullable(v.hr)
        rr = _nullable(v.rr)
        move, occ, sq = v.move.tolist(), v.occ.tolist(), v.sq.tolist()
        keep = ~v.lost & night.window_mask(ts0 + v.second * 1000)
        down = np.array([_offline(outages, s) for s in v.second.tolist()]) if outages else None
        for i in np.flatnonzero(keep).tolist():
            if down is not None and down[i]:
                self.pending = []  # a power cut loses what was not yet sent
                continue
            group = (int(v.second[i]) + self.batch_phase) // self.batch
            if group != self.pending_id:
                self._flush()
                self.pending_id = group
            self.pending.append(
                {"ts": ts[i], "hr": hr[i], "rr": rr[i], "move": move[i], "occ": occ[i], "sq": sq[i]}
            )
            self.last_ms = true_ms[i]
            if (int(v.second[i]) + self.batch_phase + 1) % self.batch == 0:
                self._flush()
        if self.wave_on:
            self._wave(v, ts0, down)

    def _flush(self) -> None:
        if not self.pending:
            return
        latency = 30 + (self.last_ms * 7919) % 250  # stable per message, looks random
        body: dict[str, Any] = (
            dict(self.pending[0]) if self.batch == 1 else {"samples": self.pending}
        )
        self.dev.push(self.last_ms + latency, "telemetry", body)
        self.pending = []

    def _wave(self, v: Vitals, ts0: int, down: np.ndarray[Any, Any] | None) -> None:
        night, opts = self.dev.night, self.dev.night.options
        rng = np.random.default_rng([*night.seed_key, 4, int(v.second[0])])
        resp, bcg, raw = render_wave(v, self.wave, rng, opts.wave_fs_hz)
        fs, block = opts.wave_fs_hz, opts.wave_block_s
        for i in range(0, CHUNK_S, block):
            t0_true = ts0 + int(v.second[i]) * 1000
            if not night.in_window_ms(t0_true) or (down is not None and down[i : i + block].any()):
                continue
            t0 = int(night.skewed(self.dev.role, v.second[i : i + 1], np.array([t0_true]))[0])
            body: dict[str, Any] = {"t0": t0, "fs": fs}
            if opts.wave is WaveMode.RAW:
                body["raw"] = raw[i * fs : (i + block) * fs]
            else:
                body["resp"] = resp[i * fs : (i + block) * fs]
                body["bcg"] = bcg[i * fs : (i + block) * fs]
            self.dev.push(t0_true + block * 1000 + 60, "wave", body)


class _BandWriter:
    def __init__(self, dev: _Device) -> None:
        self.dev = dev
        self.interval = dev.night.options.band_interval_s

    def add(self, v: Vitals, outages: list[Fault]) -> None:
        night, dev = self.dev.night, self.dev
        phase_s = dev.phase_ms // 1000 % self.interval
        for i in range(len(v.second)):
            s = int(v.second[i])
            if (s - phase_s) % self.interval or _offline(outages, s):
                continue
            true_ms = night.plan.origin_ms + dev.phase_ms % 1000 + s * 1000
            if not night.in_window_ms(true_ms):
                continue
            worn, alive = bool(v.worn[i]), bool(v.heart[i])
            hr = round(float(v.hr_true[i]) + (s * 7 % 5 - 2)) if worn and alive else None
            spo2 = round(float(v.spo2_true[i])) if worn and alive and v.move[i] < 25 else None
            body = {
                "ts": int(night.skewed(dev.role, v.second[i : i + 1], np.array([true_ms]))[0]),
                "hr": hr,
                "spo2": spo2,
                "bat": night.battery_at(s),
                "worn": int(worn),
                "steps": night.steps_at(s),
            }
            dev.push(true_ms + 80 + s % 200, "telemetry", body)


def _nullable(values: np.ndarray[Any, Any]) -> list[int | None]:
    return [None if math.isnan(x) else int(x) for x in values.tolist()]
