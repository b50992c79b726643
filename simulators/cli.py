"""`bedwatch sim`: play simulated beds against an MQTT broker and write the ground truth."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from simulators.fleet import FleetOptions, tls_context
from simulators.night import NightOptions
from simulators.runner import Progress, RunConfig, RunResult, run_fleet
from simulators.scenarios import ScenarioError, load_scenarios
from simulators.site import residents_of, write_site
from simulators.sleep import TIMEZONE
from simulators.wave import WaveMode

log = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PREFIX = "bedwatch/v1"
_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sim", help="simulate beds and wristbands over MQTT (with ground truth)")
    p.add_argument("--beds", type=int, default=1, help="residents, each with a pad and a band")
    p.add_argument("--first", type=int, default=1, help="number of the first resident (r-0001)")
    p.add_argument("--seed", type=int, default=1, help="same seed, same nights, sample for sample")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument(
        "--duration",
        type=parse_duration,
        default=8 * 3600.0,
        help="simulated time to play, e.g. 90s, 2m, 10h (default 8h)",
    )
    p.add_argument(
        "--start",
        type=parse_start,
        default=None,
        help="device time to start at, ISO (naive = Asia/Shanghai); default: now, "
        "or now minus the duration when faster than real time",
    )
    p.add_argument("--scenarios", type=Path, help="scenario file (TOML, [[scenario]] tables)")
    p.add_argument("--truth", type=Path, help="ground-truth JSONL (default bedwatch-data/sim/...)")
    p.add_argument(
        "--write-site",
        type=Path,
        metavar="FILE",
        help="write the fleet's site file for `bedwatch registry load` and exit",
    )
    p.add_argument("--url", default=None, help=f"broker (env BEDWATCH_MQTT_URL, {DEFAULT_URL})")
    p.add_argument("--prefix", default=None, help=f"topic prefix (default {DEFAULT_PREFIX})")
    p.add_argument("--password", default=None, help="device secret, if the broker wants one")
    p.add_argument("--ca-file", help="with mqtts://: the CA of the broker's certificate")
    p.add_argument(
        "--cert-file",
        help="with mqtts://: a device's certificate (PEM); {device} becomes each device's id,"
        " e.g. deploy/tls/{device}.crt",
    )
    p.add_argument("--key-file", help="its key, e.g. deploy/tls/{device}.key")
    p.add_argument("--batch", type=int, default=10, help="mattress samples a message (1-120)")
    p.add_argument("--band-interval", type=int, default=30, help="wristband telemetry every S s")
    p.add_argument(
        "--wave",
        choices=[m.value for m in WaveMode],
        default="off",
        help="raw waveform blocks: split (resp + bcg) or raw (one mixed channel)",
    )
    p.add_argument("--no-wristbands", action="store_true", help="mattresses only")
    p.add_argument("--keepalive", type=int, default=60, help="MQTT keepalive, s (<= 60)")
    p.add_argument("--connect-rate", type=float, default=1000.0, help="new connections a second")
    p.add_argument("--loops", type=int, default=1, help="network loop threads")
    p.set_defaults(handler=run)


def parse_duration(text: str) -> float:
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 2m, 10h)")
    return float(m["n"]) * _UNIT_S[m["unit"]]


def parse_start(text: str) -> int:
    if text == "now":
        return int(time.time() * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TIMEZONE)
    return int(moment.timestamp() * 1000)


def broker_settings(args: argparse.Namespace) -> tuple[str, str]:
    """URL and prefix: option, else environment, else the settings file, else the default."""
    url, prefix = os.environ.get("BEDWATCH_MQTT_URL"), os.environ.get("BEDWATCH_TOPIC_PREFIX")
    config = getattr(args, "config", None)
    if config is not None and Path(config).exists():
        with Path(config).open("rb") as f:
            mqtt = tomllib.load(f).get("mqtt", {})
        url = url or mqtt.get("url")
        prefix = prefix or mqtt.get("topic_prefix")
    return args.url or url or DEFAULT_URL, args.prefix or prefix or DEFAULT_PREFIX


def config_from(args: argparse.Namespace) -> RunConfig:
    url, prefix = broker_settings(args)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise SystemExit(f"bedwatch sim: expected mqtt://host[:port] or mqtts://, got {url!r}")
    tls = parts.scheme == "mqtts"
    if not tls and (args.ca_file or args.cert_file or args.key_file):
        raise ValueError("--ca-file, --cert-file and --key-file need an mqtts:// URL")
    start = args.start
    if start is None:
        now = int(time.time() * 1000)
        # Faster than real time, the night is played from the past so that no device
        # timestamp runs ahead of the receive time (ingest would correct such skew).
        start = now if args.speed <= 1 else now - int(args.duration * 1000)
    truth = args.truth or Path("bedwatch-data/sim") / f"truth-{_stamp(start)}-seed{args.seed}.jsonl"
    scenarios = load_scenarios(args.scenarios) if args.scenarios else ()
    config = RunConfig(
        start_ms=start,
        duration_s=args.duration,
        beds=args.beds,
        first_bed=args.first,
        seed=args.seed,
        wristbands=not args.no_wristbands,
        loops=args.loops,
        scenarios=scenarios,
        night=NightOptions(
            batch=args.batch,
            band_interval_s=args.band_interval,
            wave=WaveMode(args.wave),
            keepalive_s=args.keepalive,
        ),
        transport=FleetOptions(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            prefix=prefix,
            speed=args.speed,
            keepalive_s=args.keepalive,
            connect_rate=args.connect_rate,
            password=args.password,
            tls=tls,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
        ),
        truth_path=truth,
    )
    if tls:
        check_tls_files(config)
    return config


def check_tls_files(config: RunConfig) -> None:
    """The first device's files, read now: a typo is one line at start, not a silent retry."""
    first = residents_of(config.beds, config.first_bed)[0].mattress_id
    try:
        tls_context(config.transport, first)
    except OSError as exc:
        raise ValueError(f"TLS files of device {first}: {exc}") from None


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def run(args: argparse.Namespace) -> int:
    if args.write_site is not None:
        write_site(args.write_site, residents_of(args.beds, args.first))
        print(f"site file for {args.beds} resident(s) written to {args.write_site}")
        return 0
    try:
        config = config_from(args)
    except (ScenarioError, ValueError) as exc:
        print(f"bedwatch sim: {exc}", file=sys.stderr)
        return 2
    log.info(
        "simulating %d bed(s) from %s for %.0f s at %gx; truth in %s",
        config.beds,
        _stamp(config.start_ms),
        config.duration_s,
        config.transport.speed,
        config.truth_path,
    )
    try:
        result = run_fleet(config, progress=ProgressLine(sys.stderr.isatty()))
    except ValueError as exc:
        print(f"bedwatch sim: {exc}", file=sys.stderr)
        return 2
    print(summary(config, result))
    return 0


class ProgressLine:
    """Devices connected, messages sent and the rate: one updating line on a terminal, else a log
    line every 10 s."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self._last: tuple[float, int, int] = (0.0, 0, 0)
        self._logged = 0.0

    def __call__(self, p: Progress) -> None:
        t, published, samples = self._last
        dt = max(p.wall_s - t, 1e-6)
        rate, srate = (p.published - published) / dt, (p.samples - samples) / dt
        self._last = (p.wall_s, p.published, p.samples)
        sim = datetime.fromtimestamp(p.sim_ms / 1000, TIMEZONE).strftime("%H:%M:%S")
        line = (
            f"{p.phase:7s} sim {sim}  connected {p.connected}/{p.devices}  sent {p.published} "
            f"(acked {p.acked})  {rate:,.0f} msg/s  {srate:,.0f} samples/s"
        )
        if self.tty:
            sys.stderr.write("\r" + line + "\x1b[K" + ("\n" if p.phase == "done" else ""))
            sys.stderr.flush()
        elif p.wall_s - self._logged >= 10 or p.phase == "done":
            self._logged = p.wall_s
            log.info("%s", line)


def summary(config: RunConfig, r: RunResult) -> str:
    bed_hours = config.beds * config.duration_s / 3600
    rate = r.play_published / max(r.play_wall_s, 1e-9)
    srate = r.play_samples / max(r.play_wall_s, 1e-9)
    return (
        f"devices {r.stats.devices}, connected in {r.connect_wall_s:.1f} s; played "
        f"{config.duration_s:.0f} s at {config.transport.speed:g}x in {r.play_wall_s:.1f} s: "
        f"{r.play_published} messages ({rate:,.0f}/s), {r.play_samples} samples ({srate:,.0f}/s), "
        f"{r.stats.acked}/{r.stats.published} acked; CPU {r.play_cpu_s:.1f} s playing "
        f"({r.play_cpu_s / max(bed_hours, 1e-9):.3f} s per bed-hour), "
        f"{r.total_cpu_s:.1f} s in all; "
        f"truth: {r.truth_lines} lines in {config.truth_path}"
    )
