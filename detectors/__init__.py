"""Pure detectors in event time: records in, findings out (entry point: runner.DetectorRunner)."""
