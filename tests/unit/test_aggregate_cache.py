"""The ledger writer's aggregate cache is bounded in memory, not only in count (P6)."""

from __future__ import annotations

from application.changes import AggregateCache, approximate_size
from domain.conversation import Conversation


def conversation(participant: int, messages: int) -> Conversation:
    thread = Conversation(ig_account_id="17841400000000001", participant_id=f"55{participant:014d}")
    for n in range(messages):
        thread.receive_message(mid=f"aWdfZAG1faXRlbToxOklHTWVzc2FnZA:{n:09d}", sent_at=n, text="hi")
    thread.collect_events()
    return thread


def test_long_conversations_are_let_go_before_the_cache_passes_its_bytes() -> None:
    # given a cache of 1,000 aggregates and 1 MB, and conversations with 200 keys each
    cache = AggregateCache(1_000, max_bytes=1_000_000)
    long = [conversation(n, 200) for n in range(40)]

    # when more are put than the bytes allow
    for thread in long:
        cache.put(thread)

    # then the most recently used are kept, within the bytes, far under the count
    kept = [t for t in long if cache.get(t.id) is t]
    assert sum(approximate_size(t) for t in kept) <= 1_000_000
    assert 0 < len(kept) < 40
    assert kept == long[-len(kept) :]


def test_the_count_still_bounds_small_aggregates() -> None:
    cache = AggregateCache(10, max_bytes=1_000_000_000)
    short = [conversation(n, 1) for n in range(15)]

    for thread in short:
        cache.put(thread)

    assert [t for t in short if cache.get(t.id) is t] == short[5:]


def test_an_aggregate_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = AggregateCache(10, max_bytes=1_000)
    thread = conversation(1, 3)
    cache.put(thread)
    assert cache.get(thread.id) is None


def test_the_size_of_an_aggregate_grows_with_the_keys_it_holds() -> None:
    # measured with tracemalloc: ~52 KiB for a conversation with its 256 recent keys
    assert approximate_size(conversation(1, 1)) < approximate_size(conversation(1, 200))
    assert 40_000 <= approximate_size(conversation(1, 256)) <= 80_000
