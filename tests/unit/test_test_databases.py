"""Every database the tests touch is named after DMLEDGER_TEST_POSTGRES_URL's, so engineers
(and CI) who set it differently never write to, or drop, each other's data."""

from __future__ import annotations

from tests.conftest import derived_database


def test_a_derived_database_is_named_after_the_test_database_on_the_same_server() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/dmledger_test_alice?schema=x"

    assert derived_database(url, "bench") == (
        "postgresql://postgres@127.0.0.1:5432/dmledger_test_alice_bench"
    )


def test_two_test_databases_never_share_a_derived_one() -> None:
    alice = derived_database("postgresql://postgres@db:5432/dmledger_test_alice", "bench")
    bob = derived_database("postgresql://postgres@db:5432/dmledger_test_bob", "bench")

    assert alice != bob
