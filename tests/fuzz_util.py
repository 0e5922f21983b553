"""Shared settings for the fuzz targets (tests/test_fuzz_*.py), run by hypothesis under pytest.

Each target feeds a reader malformed input and asserts it ends in a result or
a ValueError: no crash, no hang (hypothesis' deadline per example), no other
exception. Runs are derandomized so CI is repeatable; MAMBART_FUZZ_EXAMPLES=N
runs N random examples per target instead (e.g. 100000 for a long search).
"""
import os

from hypothesis import HealthCheck, settings

_EXAMPLES = os.environ.get("MAMBART_FUZZ_EXAMPLES")

FUZZ = settings(
    max_examples=int(_EXAMPLES) if _EXAMPLES else 400,
    derandomize=not _EXAMPLES,
    deadline=2000,  # ms per example: far above any reader's time on these small inputs
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)


def result_or_value_error(fn, *args, **kwargs):
    """fn's result, or None when it raised ValueError; any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        message = str(e)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"
        return None
