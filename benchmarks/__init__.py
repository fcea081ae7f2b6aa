"""Benchmarks, run from the repository root as ``python -m benchmarks.<name>`` or with pytest."""
