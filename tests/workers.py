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


def reports_threads(configs, explain):
    """A worker that sends back its share of the cores as its libraries will see it: the
    share, the variables their pools start from, and NumPy's row groups."""
    from xptrain import backends, check_jobs
    from xptrain.backends import threads

    seen = {
        "share": threads.shared(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "numpy_workers": backends.get("numpy").workers,
    }
    for i, _config in configs:
        check_jobs._DONE.put((i, seen, {}))
