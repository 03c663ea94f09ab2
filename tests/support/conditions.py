"""A condition as an assertion, for `eventually` (`tests/conftest.py`), which retries a
check until it stops raising AssertionError: `eventually(lambda: assert_true(...))`."""

from __future__ import annotations


def assert_true(condition: bool) -> None:
    assert condition
