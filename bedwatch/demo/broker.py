"""An MQTT broker that comes with the project: rumqttd (the `iotcore` wheel) in a child process."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from iotcore import Broker

log = logging.getLogger(__name__)

# rumqttd keeps at most 100 unacknowledged QoS 1 messages in flight per client whatever
# max_inflight_count or an MQTT 5 receive-maximum say (measured with iotcore 0.4.0); the
# figure below is what a deployment would ask for, and harmless where it is not honoured.
CONFIG = """\
id = 0

[router]
id = 0
max_connections = 1010
max_outgoing_packet_count = 10000
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "devices-v4"
listen = "{host}:{v4_port}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 10000
    dynamic_filters = true

[v5.1]
name = "service-v5"
listen = "{host}:{v5_port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 10000
"""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where to reach the embedded broker: devices speak MQTT 3.1.1, the service MQTT 5."""

    host: str
    v4_port: int
    v5_port: int

    @property
    def device_url(self) -> str:
        return f"mqtt://{self.host}:{self.v4_port}"

    @property
    def service_url(self) -> str:
        return f"mqtt://{self.host}:{self.v5_port}"


class EmbeddedBroker:
    """rumqttd on two free local ports; its TOML config is written under `directory`.

    Open with `start()` (or `with`), close with `stop()`: the child process ends and the ports
    are free again. Messages live in memory only, as the demo needs nothing more.
    """

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", max_payload: int) -> None:
        self.directory = directory
        self.host = host
        self.max_payload = max_payload
        self._broker: Broker | None = None
        self.address: BrokerAddress | None = None

    def start(self, timeout_s: float = 10.0) -> BrokerAddress:
        self.directory.mkdir(parents=True, exist_ok=True)
        address = BrokerAddress(self.host, free_port(self.host), free_port(self.host))
        config = self.directory / "rumqttd.toml"
        config.write_text(
            CONFIG.format(
                host=address.host,
                v4_port=address.v4_port,
                v5_port=address.v5_port,
                max_payload=self.max_payload,
            ),
            encoding="utf-8",
        )
        broker = Broker(config_path=str(config))
        broker.start(timeout=timeout_s)
        self._broker, self.address = broker, address
        log.info("embedded broker on %s and %s", address.device_url, address.service_url)
        return address

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    @property
    def running(self) -> bool:
        return self._broker is not None and self._broker.is_running

    def __enter__(self) -> BrokerAddress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
