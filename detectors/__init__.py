"""Detectors, pure and in event time: records in, findings out (entry: runner.DetectorRunner).

Owns the per-resident state, every detector and its thresholds (`detectors` tables of the site
file), night summaries, findings and their scoring against ground truth. No I/O, no clock.

May import the record types of `ingest` (`ingest.records`), nothing else of the project.
"""
