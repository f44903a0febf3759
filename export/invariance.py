"""Batch invariance of a model file, measured: moved to charwright.runtime.verify.invariance (the
runtime's `verify` and `serve` measure it too, and the runtime never imports charwright.export).
This name stays for export's writer and for scripts."""

from charwright.runtime.verify.invariance import (BATCHES, Invariance, measure,  # noqa: F401
                                                  measure_file, same_bits, sample_rows)
