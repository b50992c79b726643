"""Simulated BedWatch devices: seeded resident-nights as protocol-v1 messages, with ground truth.

Owns the resident and night models, scenarios, faults, the fleet that plays them over MQTT and
`bedwatch sim`. Imports nothing of the project's other packages: it speaks to BedWatch only as
devices do, through the protocol.

Score a detector over nights without any broker (pure, about 0.1 s a bed-night)::

    from datetime import date
    from simulators import make_nights, residents_of, scenario

    spec = [scenario("breathing_pause", at="02:30", duration_s=45, residents=["r-0001"])]
    nights = make_nights(residents_of(200), seed=1, first_night=date(2025, 11, 26), scenarios=spec)
    for night in nights:
        for device_time_ms, device_id, channel, payload, qos, retain in night.messages():
            ...  # feed the decoder and detectors; payload is the JSON bytes a device sends
        truth = night.truth()  # NightTruth + ScenarioTruth lines (write_truth() makes the JSONL)
        vitals = night.vitals_window()  # per-second numpy arrays, if JSON is not needed

Play a fleet over MQTT (one paho connection per device) from code, as `bedwatch sim` does::

    from simulators.runner import RunConfig, run_fleet
    result = run_fleet(RunConfig(start_ms=now_ms, duration_s=120, beds=100))
"""

from simulators.faults import Message
from simulators.ground_truth import Expect, NightTruth, ScenarioTruth, read_truth, write_truth
from simulators.night import Night, NightOptions, make_night, make_nights
from simulators.scenarios import ScenarioKind, ScenarioSpec, load_scenarios, scenario
from simulators.site import Devices, residents_of, site_toml, write_site
from simulators.wave import WaveMode

__all__ = [
    "Devices",
    "Expect",
    "Message",
    "Night",
    "NightOptions",
    "NightTruth",
    "ScenarioKind",
    "ScenarioSpec",
    "ScenarioTruth",
    "WaveMode",
    "load_scenarios",
    "make_night",
    "make_nights",
    "read_truth",
    "residents_of",
    "scenario",
    "site_toml",
    "write_site",
    "write_truth",
]
