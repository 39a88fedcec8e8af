"""Benchmark harness for the dashboard: run `python bench/run.py` (see RESULTS.md)."""
