"""Jobs for check's worker processes that a test needs and a spawned worker can import."""

import os


def dies(configs, explain):
    """A worker whose library crashes the process outright (no exception to catch)."""
    os._exit(3)
