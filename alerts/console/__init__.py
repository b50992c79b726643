"""The care staff's web console: live alerts, ack and resolve, residents' status, night plots."""

from alerts.console.auth import Sessions
from alerts.console.live import Changes
from alerts.console.routes import Console

__all__ = ["Changes", "Console", "Sessions"]
