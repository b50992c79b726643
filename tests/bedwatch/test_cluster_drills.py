"""The cluster drills, short: a three-node NATS cluster, two bridges, three workers and the
engine as processes, a ward of pads and bands pressing SOS, and the faults of tests/
cluster_drills.py one after the other; the direct-capture control beside them. bench/
cluster_drills.py runs them at full size for the README's table.

One fixture runs them all (the control on a thread of its own, as it mostly waits); each drill is
then reported as a test of its own.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.cluster_drills import DRILLS, ClusterPlan, Outcome, Report, direct_capture, run

pytestmark = pytest.mark.slow

# Smaller and quicker than the benchmark's (500 residents, 10 s leases, 10 s between faults),
# still with a bradycardia run for every tenth resident and presses around every fault.
SHORT = ClusterPlan(
    residents=200,
    rate_per_s=250.0,
    lease_ttl_s=4.0,
    checkpoint_every_s=0.5,
    settle_s=1.5,
    presses=2,
    down_s=1.5,
    control_messages=800,
    control_kill_at=200,
)
CONTROL_RUNS = 3


@pytest.fixture(scope="module")
def drills() -> tuple[Report | BaseException, Outcome | BaseException]:
    def scenario() -> Report | BaseException:
        try:
            with tempfile.TemporaryDirectory(prefix="bedwatch-drills-") as folder:
                return run(SHORT, Path(folder))
        except Exception as exc:  # reported by every drill's test
            return exc

    def control() -> Outcome | BaseException:
        # The loss depends on how long the stream is without a leader while NATS's MQTT goes on
        # acknowledging: a short run may see none. Up to three runs, and the test says how many.
        try:
            for attempt in range(1, CONTROL_RUNS + 1):
                with tempfile.TemporaryDirectory(prefix="bedwatch-control-") as folder:
                    outcome = direct_capture(SHORT, Path(folder))
                outcome.notes.append(f"run {attempt} of up to {CONTROL_RUNS}")
                if outcome.lost or outcome.duplicated:
                    break
            return outcome
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        report, outcome = pool.submit(scenario), pool.submit(control)
        return report.result(), outcome.result()


def report_of(drills: tuple[Report | BaseException, Outcome | BaseException]) -> Report:
    report = drills[0]
    if isinstance(report, BaseException):
        raise report
    return report


@pytest.mark.parametrize("name", list(DRILLS))
def test_drill(name: str, drills: tuple[Report | BaseException, Outcome | BaseException]) -> None:
    """Nothing acknowledged lost or stored twice, every SOS paged once, the drill's own
    promise (a quarter moved on a join, a SIGTERM's hand-off within 2 s) kept."""
    [outcome] = [o for o in report_of(drills).outcomes if o.drill == name]
    assert outcome.samples > 0, outcome.row()
    assert outcome.sos > 0, outcome.row()
    assert not outcome.failed, outcome.row()
    if name in ("sigterm", "sigkill"):
        assert outcome.takeover_s is not None, outcome.row()
    if name == "sigkill":  # after the lease ran out, and not much later
        assert outcome.takeover_s is not None
        assert outcome.takeover_s < SHORT.lease_ttl_s + 3.0, outcome.row()


def test_the_whole_run_kept_epochs_order_and_findings(
    drills: tuple[Report | BaseException, Outcome | BaseException],
) -> None:
    """Across every drill: no checkpoint under a superseded epoch, no position going back, no
    late findings, and the findings of the data those of a run without faults."""
    report = report_of(drills)
    assert report.findings_expected >= SHORT.residents // SHORT.brady_every, report.summary()
    assert not report.failed, report.summary()


def test_without_the_bridge_the_same_check_finds_acknowledged_messages_lost(
    drills: tuple[Report | BaseException, Outcome | BaseException],
) -> None:
    """The negative control: a stream capturing NATS's MQTT subjects, its leader killed. NATS's
    MQTT acknowledgement does not cover the stream; the check that finds nothing lost through
    the bridge (leader-kill above) finds messages lost, or stored twice, here."""
    outcome = drills[1]
    if isinstance(outcome, BaseException):
        raise outcome
    assert outcome.samples >= SHORT.control_kill_at, outcome.row()
    assert outcome.lost + outcome.duplicated > 0, outcome.row()
