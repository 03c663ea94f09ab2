"""The ledger writer's aggregate cache is bounded in memory, not only in count (P6)."""

from __future__ import annotations

from application.changes import AggregateCache, approximate_size
from domain.conversation import Conversation
from domain.recorded_keys import RECENT_KEYS, OlderKeys


def conversation(participant: int, messages: int) -> Conversation:
    thread = Conversation(ig_account_id="17841400000000001", participant_id=f"55{participant:014d}")
    # Past its recent keys a conversation asks about older ones (the writer gives it this).
    thread.older_keys = OlderKeys()
    for n in range(messages):
        thread.receive_message(mid=f"aWdfZAG1faXRlbToxOklHTWVzc2FnZA:{n:09d}", sent_at=n, text="hi")
    thread.collect_events()
    return thread


def test_long_conversations_are_let_go_before_the_cache_passes_its_bytes() -> None:
    # given a cache of 1,000 aggregates and 300 kB, and conversations past their recent keys
    cache = AggregateCache(1_000, max_bytes=300_000)
    long = [conversation(n, 200) for n in range(40)]

    # when more are put than the bytes allow
    for thread in long:
        cache.put(thread)

    # then the most recently used are kept, within the bytes, far under the count
    kept = [t for t in long if cache.get(t.id) is t]
    assert sum(approximate_size(t) for t in kept) <= 300_000
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


def test_the_size_of_an_aggregate_grows_with_the_keys_it_holds_up_to_its_recent_ones() -> None:
    # measured with tracemalloc: ~15 KiB for a conversation with its 64 recent keys
    full = approximate_size(conversation(1, RECENT_KEYS))
    assert approximate_size(conversation(1, 1)) < full
    assert 10_000 <= full <= 25_000
    # older keys are the store's: a longer conversation holds no more
    assert approximate_size(conversation(1, 3 * RECENT_KEYS)) <= full * 1.1
