"""Detector state per resident and device: small, mutable, slotted, and snapshot-friendly."""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.nights import NightState
from detectors.persist import Episode, Reported
from detectors.wavestream import WaveState


@dataclass(slots=True)
class ExitState:
    """Bed occupancy as `bed_exit_no_return` sees it."""

    in_bed: bool = False
    out_since_ms: int = -1  # an exit from bed in progress since; -1: none
    deadline_ms: int = -1  # when the exit becomes a finding; -1: it never will (outside the night)
    back_since_ms: int = -1  # occupied again since (the return is not yet confirmed)
    fired: bool = False


@dataclass(slots=True)
class MattressState:
    """One pad: a run per condition and level, occupancy, and waveform analysis."""

    last_ts_ms: int = 0
    occ: int = 0
    beating: bool = True  # the pad's last readable sample had a heart rate
    absent: Episode = field(default_factory=Episode)
    hr_high: Episode = field(default_factory=Episode)
    hr_elevated: Episode = field(default_factory=Episode)
    rr_high: Episode = field(default_factory=Episode)
    rr_elevated: Episode = field(default_factory=Episode)
    pause: Episode = field(default_factory=Episode)
    pause_counted_ms: int = -1  # start of the rr = 0 run already counted into the night
    immobile: Episode = field(default_factory=Episode)
    exit: ExitState = field(default_factory=ExitState)
    wave: WaveState = field(default_factory=WaveState)

    def episodes(self) -> tuple[Episode, ...]:
        return (
            self.absent,
            self.hr_high,
            self.hr_elevated,
            self.rr_high,
            self.rr_elevated,
            self.pause,
            self.immobile,
        )


@dataclass(slots=True)
class WristbandState:
    last_ts_ms: int = 0
    hr_high: Episode = field(default_factory=Episode)
    hr_elevated: Episode = field(default_factory=Episode)
    spo2_prev_level: int = -1  # 2 low, 1 medium, 0 normal, -1 no usable previous reading
    spo2_prev_ms: int = 0
    spo2_prev_pct: float = 0.0
    spo2_level: int = 0  # the level reported to alerts
    spo2_started_ms: int = 0
    unworn_prev: bool = False
    removed: bool = False
    battery_low: bool = False
    last_fall_id_ms: int = -1  # the device's own time of the last fall (DeviceEvent.identity_ms)

    def episodes(self) -> tuple[Episode, ...]:
        return (self.hr_high, self.hr_elevated)


@dataclass(slots=True)
class SilenceState:
    """One device's liveness by receive time."""

    last_rx_ms: int = -1  # -1: nothing received yet (the first tick starts the clock)
    silent: bool = False
    since_ms: int = 0


@dataclass(slots=True)
class SosState:
    first_ms: int = -1  # first press of the open group; -1: none open
    last_ms: int = -1
    presses: int = 0
    last_id_ms: int = -1  # the device's own time of the last press (DeviceEvent.identity_ms)


@dataclass(slots=True)
class ResidentState:
    """Everything the detectors remember about one resident."""

    mattresses: dict[str, MattressState] = field(default_factory=dict)
    bands: dict[str, WristbandState] = field(default_factory=dict)
    silence: dict[str, SilenceState] = field(default_factory=dict)
    in_bed: bool = False  # as the pads last said (wristband vitals count only in bed)
    hr: Reported = field(default_factory=Reported)
    rr: Reported = field(default_factory=Reported)
    absent: Reported = field(default_factory=Reported)
    pause: Reported = field(default_factory=Reported)
    spo2: Reported = field(default_factory=Reported)
    sos: SosState = field(default_factory=SosState)
    alarm_ms: int = -1  # the last sos or fall not cancelled (inhibits bed_exit_no_return)
    night: NightState = field(default_factory=NightState)
    history: list[list[float | None]] = field(default_factory=list)  # past nights' metrics

    def mattress(self, device_id: str) -> MattressState:
        state = self.mattresses.get(device_id)
        if state is None:
            state = self.mattresses[device_id] = MattressState()
        return state

    def band(self, device_id: str) -> WristbandState:
        state = self.bands.get(device_id)
        if state is None:
            state = self.bands[device_id] = WristbandState()
        return state

    def liveness(self, device_id: str) -> SilenceState:
        state = self.silence.get(device_id)
        if state is None:
            state = self.silence[device_id] = SilenceState()
        return state
