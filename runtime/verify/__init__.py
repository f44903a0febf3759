"""A bundle checked against its reference: probe replay and parity on every file, scoring,
TFLite Micro's replay, the sampling golden vectors."""
