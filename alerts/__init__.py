"""Alerts: a finding becomes an alert that reaches a person, is acknowledged or escalated.

Owns the alert lifecycle, routing and escalation, delivery (apprise), digests, the direct
emergency fallback, the ack API and the web console, the `alerts` settings section and site-file
section, its migrations and metrics. What it needs from its host (a clock, a way to send a
device a command, a web server) comes through `alerts.host.Host`.

May import findings from `detectors` and record types and helpers from `ingest`; never
`bedwatch` or `simulators`.
"""
