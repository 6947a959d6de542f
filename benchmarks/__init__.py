"""Benchmarks for nnc-tl (`make bench` / `python -m benchmarks`): numbers, never pass/fail."""
