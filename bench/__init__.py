"""Benchmarks that print JSON: `python bench/media_jobs.py` (see its docstring for the figures).

Speed is measured here, never by timed assertions in tests.
"""
