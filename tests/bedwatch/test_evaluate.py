"""End to end on simulated nights: simulator → Decoder → in-order filter → runner → score."""

from __future__ import annotations

from datetime import timedelta

from bedwatch.evaluate import FIRST_NIGHT, simulate
from detectors.runner import DetectorRunner
from detectors.scoring import score
from detectors.settings import ResidentConfig
from ingest.intake import InOrder
from ingest.protocol import Decoder, DeviceInfo
from ingest.records import DeviceId, DeviceKind, ResidentId
from simulators.night import NightOptions, make_night
from simulators.scenarios import scenario
from simulators.site import residents_of
from simulators.wave import WaveMode


def test_a_few_simulated_nights_meet_the_targets() -> None:
    run = simulate(3, 2, seed=7, wave_every=0)
    report = score(run.truth, run.findings_json())
    for name, k in report.kinds.items():
        if k.expected and name not in ("apnea_index",):
            assert k.detected == k.expected, (name, report.missed)
            assert max(k.delays_s) <= k.limit_s, name
    assert report.false_alarms / report.nights <= 0.5
    assert len(run.summaries) == 6


def test_scripted_critical_scenarios_with_a_waveform_pad() -> None:
    devices = residents_of(1)[0]
    specs = [
        scenario("sos", at="23:30"),
        scenario("fall", at="01:00"),
        scenario("vitals_gone", at="03:00", duration_s=120),
        scenario("breathing_pause", at="04:30", duration_s=45),
    ]
    night = make_night(
        devices,
        3,
        night_date=FIRST_NIGHT + timedelta(days=1),
        scenarios=specs,
        options=NightOptions(wave=WaveMode.RAW),
    )
    rid, mat, band = (
        ResidentId(devices.resident_id),
        DeviceId(devices.mattress_id),
        DeviceId(devices.wristband_id),
    )
    found: list[dict[str, object]] = []
    derived: list[object] = []
    from detectors.scoring import finding_to_json

    runner = DetectorRunner(
        residents={
            rid: ResidentConfig(
                rid, "Asia/Shanghai", {mat: DeviceKind.MATTRESS, band: DeviceKind.WRISTBAND}
            )
        },
        on_finding=lambda f: found.append(finding_to_json(f)),
        on_derived=derived.extend,
    )
    decoder = Decoder(
        devices={
            mat: DeviceInfo(DeviceKind.MATTRESS, rid),
            band: DeviceInfo(DeviceKind.WRISTBAND, rid),
        }
    )
    ordered = InOrder(runner)
    for msg in night.messages(broker_will=True):
        topic = f"bedwatch/v1/{msg.device_id}/{msg.channel}"
        ordered.feed(decoder.decode(topic, msg.payload, msg.device_time_ms + 100, msg.retain))
    report = score([t.to_json() for t in night.truth()], found)
    for kind in ("sos", "fall", "vitals_absent", "breathing_pause"):
        assert report.kinds[kind].detected == report.kinds[kind].expected == 1, kind
    assert report.false_alarms == 0
    assert len(derived) > 1000  # a derived sample every 10 s of the night
