"""Benchmark: cold start, warm latency, peak RSS and installed size of the function vs the tutorial baseline.

Run ``python -m bench --help`` (or ``python bench/run.py``); see bench/README.md.
"""
