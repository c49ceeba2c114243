"""Benchmarks are not part of the default test run: `pytest bench/` or `tox -e bench`."""
