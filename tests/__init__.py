import pytest

# The helpers under tests/support assert too (a webhook answered 200, ...): rewritten as the
# tests' own asserts are, a failing one shows its values instead of a bare AssertionError.
pytest.register_assert_rewrite("tests.support")
