"""Findings into the engine: in order per resident, retried in place, others not held up."""

from __future__ import annotations

import asyncio
import contextlib

from alerts.intake import FindingIntake
from detectors.findings import Finding, FindingKind, Severity
from ingest.records import ResidentId


def found(resident: str, kind: FindingKind, at_ms: int, *, cleared: bool = False) -> Finding:
    return Finding(ResidentId(resident), kind, Severity.CRITICAL, at_ms, at_ms, cleared=cleared)


def test_a_failed_finding_is_retried_before_anything_later_of_its_resident() -> None:
    handled: list[tuple[str, str, bool]] = []
    failures = {("r-a", FindingKind.SOS, False): 2}  # the engine refuses it twice

    async def handle(item: tuple[int | None, Finding]) -> None:
        finding = item[1]
        key = (finding.resident_id, finding.kind, finding.cleared)
        if failures.get(key, 0):
            failures[key] -= 1
            raise RuntimeError("database away")
        handled.append((finding.resident_id, finding.kind.value, finding.cleared))

    async def scenario() -> None:
        intake = FindingIntake(lanes=1, retry_s=0.05)
        runner = asyncio.create_task(intake.run(handle))
        intake.put((None, found("r-a", FindingKind.SOS, 1)))
        intake.put((None, found("r-b", FindingKind.FALL, 2)))
        intake.put((None, found("r-a", FindingKind.SOS, 3, cleared=True)))  # sos_cancel
        intake.put((None, found("r-b", FindingKind.FALL, 4, cleared=True)))
        await asyncio.wait_for(intake.idle(), 5)  # handled, or parked for a retry
        assert len(handled) == 2  # r-b's two; r-a's wait for its first to go through
        for _ in range(100):
            if len(handled) == 4:
                break
            await asyncio.sleep(0.01)
        assert intake.waiting == 0
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    asyncio.run(scenario())
    assert handled == [
        ("r-b", "fall", False),  # not held up by r-a's trouble
        ("r-b", "fall", True),
        ("r-a", "sos", False),  # then r-a's, in the order they were found
        ("r-a", "sos", True),
    ]
