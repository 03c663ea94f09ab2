"""A rebuild's mirror holds what its new view's tables hold, once committed, and no more
than its limit; past it, or after a failed batch, it no longer answers for absent rows."""

from __future__ import annotations

from projections.mirror import MIRROR_LIMIT, Mirror


def holding(*keys: str, limit: int = MIRROR_LIMIT) -> Mirror:
    """A mirror that committed a row {"k": key} of table "t" for each key, in this order."""
    mirror = Mirror(limit=limit)
    for key in keys:
        mirror.stage("t", (key,), {"k": key})
    mirror.commit()
    return mirror


def test_rows_a_batch_stages_are_held_only_once_committed() -> None:
    mirror = Mirror()
    mirror.stage("t", ("a",), {"k": "a", "n": 1})
    assert mirror.stored("t", ("a",)) is False
    mirror.commit()
    assert mirror.stored("t", ("a",)) is True
    assert mirror.stored("t", ("b",)) is False  # complete: never written, so not stored


def test_a_batch_gets_a_copy_of_a_held_row() -> None:
    mirror = Mirror()
    mirror.stage("t", ("a",), {"k": "a", "n": 1})
    mirror.commit()
    row = mirror.get("t", ("a",))
    assert row == {"k": "a", "n": 1}
    assert row is not None
    row["n"] = 2
    assert mirror.get("t", ("a",)) == {"k": "a", "n": 1}


def test_a_deleted_row_is_no_longer_stored() -> None:
    mirror = holding("a")
    mirror.stage("t", ("a",), None)
    mirror.commit()
    assert mirror.stored("t", ("a",)) is False


def test_past_its_limit_it_lets_the_oldest_go_and_no_longer_knows_what_is_absent() -> None:
    mirror = holding("a", "b", "c", limit=2)
    assert mirror.stored("t", ("a",)) is None  # let go: may be stored
    assert mirror.stored("t", ("c",)) is True
    assert mirror.stored("t", ("z",)) is None


def test_a_row_written_again_is_the_last_let_go() -> None:
    mirror = holding("a", "b", limit=2)
    mirror.stage("t", ("a",), {"k": "a", "again": True})
    mirror.stage("t", ("c",), {"k": "c"})
    mirror.commit()
    assert mirror.stored("t", ("b",)) is None
    assert mirror.get("t", ("a",)) == {"k": "a", "again": True}


def test_after_a_failed_batch_it_knows_nothing() -> None:
    mirror = holding("a")
    mirror.stage("t", ("b",), {"k": "b"})
    mirror.forget()
    assert mirror.stored("t", ("a",)) is None
    assert mirror.stored("t", ("b",)) is None


def test_changes_neither_committed_nor_forgotten_make_the_next_batch_ask_the_database() -> None:
    mirror = Mirror()
    mirror.stage("t", ("a",), {"k": "a"})
    mirror.begin()
    assert mirror.stored("t", ("a",)) is None
    assert mirror.stored("t", ("z",)) is None


def test_emptied_tables_hold_nothing_and_it_knows_it() -> None:
    mirror = holding("a", "b", limit=1)
    mirror.clear()
    assert mirror.stored("t", ("b",)) is False
