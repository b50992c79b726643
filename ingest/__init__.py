"""Ingest, the lowest layer: device data in, stored exactly once.

Owns the MQTT session, protocol v1 (decoding, validation, identity), the record types, the
registry of residents, devices and contacts, storage of device data and quarantine, retention,
its settings sections (`mqtt`, `database`, `ingest`, `retention`), its migrations and metrics.

May import only the standard library and third-party packages: nothing of `detectors`,
`alerts`, `simulators` or `bedwatch`.
"""
