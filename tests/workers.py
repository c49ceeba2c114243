"""Jobs for check's worker processes that a test needs and a spawned worker can import."""

import os


def dies(configs, explain):
    """A worker whose library crashes the process outright (no exception to catch)."""
    os._exit(3)


def reports_kept_compiled(configs, explain):
    """A worker that sends back, as each configuration's row, where it keeps compiled code."""
    from xptrain import backends, check_jobs

    for i, _config in configs:
        check_jobs._DONE.put((i, backends.kept_compiled(), {}))
