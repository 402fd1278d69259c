"""Benchmarks: figures and same-run ratios, printed and kept in bench/results/. Not tests."""
