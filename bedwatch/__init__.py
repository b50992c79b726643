"""BedWatch, the application: what runs the components below it.

Owns the `bedwatch` command, the settings file composed from each component's section, the
composition root (`service.py`), the HTTP app, the migration runner, the detector host (worker
process, findings and state in the database), `bedwatch eval` and the demo.

May import every component: `ingest`, `detectors`, `alerts`, `simulators`. Nothing imports it.
"""
