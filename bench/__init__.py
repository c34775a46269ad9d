"""Benchmarks (``make bench``): they measure and report, they never assert. See docs/benchmarks.md."""
