"""Request ids made for requests that bring none are random version-4 UUIDs in hex."""

from __future__ import annotations

import uuid

from interfaces.http.request_context import new_request_id


def test_a_new_request_id_is_a_random_uuid4_in_hex() -> None:
    made = [new_request_id() for _ in range(1000)]

    assert len(set(made)) == len(made)
    for request_id in made:
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (request_id, 4, uuid.RFC_4122)
