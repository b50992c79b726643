"""device_silent, by receive time and Last Will: the one detector on the service clock."""

from __future__ import annotations

from detectors.findings import Finding, FindingKind, Severity
from detectors.state import SilenceState
from ingest.records import DeviceId, ResidentId


def heard(
    st: SilenceState, resident_id: ResidentId, device_id: DeviceId, received_at_ms: int
) -> list[Finding]:
    """Data (or an online status) from the device: a silence, if reported, is over."""
    st.last_rx_ms = max(st.last_rx_ms, received_at_ms)
    if not st.silent:
        return []
    st.silent = False
    return [
        Finding(
            resident_id,
            FindingKind.DEVICE_SILENT,
            Severity.MEDIUM,
            received_at_ms,
            st.since_ms,
            cleared=True,
            device_id=device_id,
            evidence={"silent_s": (received_at_ms - st.since_ms) / 1000},
        )
    ]


def went_offline(
    st: SilenceState, resident_id: ResidentId, device_id: DeviceId, at_ms: int
) -> list[Finding]:
    """An offline status (the device's Last Will, or a clean disconnect)."""
    if st.silent:
        return []
    st.silent = True
    st.since_ms = st.last_rx_ms if st.last_rx_ms >= 0 else at_ms
    return [
        Finding(
            resident_id,
            FindingKind.DEVICE_SILENT,
            Severity.MEDIUM,
            at_ms,
            st.since_ms,
            device_id=device_id,
            evidence={"status": "offline", "last_heard_ms": st.since_ms},
        )
    ]


def tick(
    st: SilenceState, resident_id: ResidentId, device_id: DeviceId, now_ms: int, silent_s: float
) -> list[Finding]:
    """Nothing heard for `silent_s` of service time."""
    if st.last_rx_ms < 0:
        st.last_rx_ms = now_ms  # never heard since start: the clock starts now
        return []
    if st.silent or now_ms - st.last_rx_ms < silent_s * 1000:
        return []
    st.silent = True
    st.since_ms = st.last_rx_ms
    return [
        Finding(
            resident_id,
            FindingKind.DEVICE_SILENT,
            Severity.MEDIUM,
            now_ms,
            st.since_ms,
            device_id=device_id,
            evidence={
                "last_heard_ms": st.last_rx_ms,
                "limit_s": silent_s,
                "silent_s": (now_ms - st.last_rx_ms) / 1000,
            },
        )
    ]
