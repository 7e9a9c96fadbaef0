"""Benchmarks: openfero's speed, each figure beside its ceiling from the same run.

Not tests: they print and write figures and never fail on timing.
Run with `scripts/bench` (or `python -m bench`).
"""
