"""Tamper evidence for the event log: an HMAC chain over each aggregate and over the log.

Every stored event gets a *link*, kept beside it in `<events table>_chain` and written in
the same transaction (see `infrastructure.chained_recorders`):

    link(e) = HMAC-SHA256(chain key, id | version | position | topic | state
                          | link of the aggregate's previous event
                          | previous position | link of the log's previous event)

The previous event of the log is the one stored just before `e` (whatever its
aggregate), read under the insert's table lock, so the links of all writers form one
chain; its position is kept in the link row, so a missing event is named. The position
is the event's place in the log, so moving an event is as visible as editing it. Links
made before the log chain existed (`previous_position` NULL) chain their aggregate only.

The chain starts at a signed *genesis* record (`<events table>_chain_genesis`), written
with the first linked events: where links began (`began_at`; events before it were
stored before the chain existed) and where the log chain began (`log_began_at`, whose
first link chains to the genesis itself). A *checkpoint* signs the position and link of
the log's newest event, for an auditor to keep outside the database: the log must go on
extending it.

The chain key is derived from a `DMLEDGER_SECRET_KEY` (HKDF), so rewriting events *and*
their links needs the deployment's secret. Each link, genesis and checkpoint names the
key it was made with, so a rotated key still verifies what was made before the rotation
while it stays configured. The verifier is `infrastructure.chain_verifier`.

A little over 300 lines: the link's definition, its record types and the keyring that
signs them are one specification, read together by whoever audits the chain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"dmledger event chain v1"
_DOMAIN = b"dmledger-event-chain-v1\x00"
"""Links of an aggregate's chain only (made before the log chain existed)."""
_DOMAIN_LOG = b"dmledger-event-chain-v2\x00"
_GENESIS = b"dmledger-chain-genesis-v1\x00"
_CHECKPOINT = b"dmledger-chain-checkpoint-v1\x00"
DIGEST_SIZE = 32


@dataclass(frozen=True)
class Link:
    """The stored chain link of one event."""

    originator_id: UUID
    version: int
    position: int
    """The event's position in the log when the link was made."""
    key_id: str
    digest: bytes
    previous_position: int | None = None
    """The position of the log's event this link chains to (0: the genesis); None for a
    link made before the log chain existed."""


@dataclass(frozen=True)
class LinkedEvent:
    """A stored event as the log holds it now, with its link if it has one."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes
    link: Link | None


@dataclass(frozen=True)
class Genesis:
    """Where the chain began, signed."""

    began_at: int
    """The first position with a link: events before it were stored before the chain."""
    log_began_at: int
    """The first position whose link chains to the log's previous event (or here, to the
    genesis itself)."""
    key_id: str
    digest: bytes


@dataclass(frozen=True)
class Tail:
    """What an insert needs to know of the chain, read under the insert's table lock."""

    genesis: Genesis | None
    last: tuple[int, bytes] | None
    """Position and link of the newest event linked to the log chain."""
    first_linked: int | None
    """The first position with any link (a chain begun before the log chain existed)."""


_TOKEN = re.compile(
    r"dmledger-checkpoint-v1:(\d{1,19}):(\d{1,19}):([0-9a-f]{64}):([0-9a-f]{16}):([0-9a-f]{64})"
)


@dataclass(frozen=True)
class Checkpoint:
    """The log's newest linked event, as an auditor keeps it outside the database."""

    position: int
    began_at: int
    """Where the chain began when the checkpoint was taken."""
    digest: bytes
    """The link of the event at `position`."""
    key_id: str
    signature: bytes

    def token(self) -> str:
        return (
            f"dmledger-checkpoint-v1:{self.position}:{self.began_at}:{self.digest.hex()}:"
            f"{self.key_id}:{self.signature.hex()}"
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from its token; ValueError if `text` is not one."""
        found = _TOKEN.fullmatch(text.strip())
        if found is None:
            msg = "is not a dmledger checkpoint (dmledger-checkpoint-v1:...)"
            raise ValueError(msg)
        position, began_at, digest, key_id, signature = found.groups()
        return cls(
            int(position), int(began_at), bytes.fromhex(digest), key_id, bytes.fromhex(signature)
        )


def _raw_key(fernet_key: str) -> bytes:
    return base64.urlsafe_b64decode(fernet_key.strip().encode())


NewEvent = tuple[int, UUID, int, str, bytes]
"""(position, aggregate id, version, topic, state) of an event being inserted."""


class ChainKeyring:
    """The chain keys derived from the configured secret keys; the first one signs."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            msg = "the event chain needs at least one secret key"
            raise ValueError(msg)
        self._keys: dict[str, bytes] = {}
        self.signing_key_id = ""
        for secret in secret_keys:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
                _raw_key(secret)
            )
            key_id = hashlib.sha256(key).hexdigest()[:16]
            self._keys.setdefault(key_id, key)
            self.signing_key_id = self.signing_key_id or key_id

    def __repr__(self) -> str:
        return f"ChainKeyring(<{len(self._keys)} keys hidden>)"

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def digest(
        self,
        key_id: str,
        *,
        originator_id: UUID,
        version: int,
        position: int,
        topic: str,
        state: bytes,
        previous: bytes | None,
        log_previous: tuple[int, bytes] | None = None,
    ) -> bytes:
        """The link of an event, given the link of the aggregate's previous event and
        (position, link) of the log's previous one (None: a link of the aggregate only)."""
        domain = _DOMAIN if log_previous is None else _DOMAIN_LOG
        mac = hmac.new(self._keys[key_id], domain, hashlib.sha256)
        mac.update(originator_id.bytes)
        mac.update(struct.pack(">QQ", version, position))
        encoded_topic = topic.encode()
        mac.update(struct.pack(">I", len(encoded_topic)))
        mac.update(encoded_topic)
        mac.update(struct.pack(">Q", len(state)))
        mac.update(state)
        # A flag byte, so that "no previous link" can never equal some previous link.
        mac.update(b"\x01" + previous if previous is not None else b"\x00")
        if log_previous is not None:
            mac.update(struct.pack(">Q", log_previous[0]))
            mac.update(log_previous[1])
        return mac.digest()

    def genesis(self, *, began_at: int, log_began_at: int) -> Genesis:
        key_id = self.signing_key_id
        return Genesis(
            began_at, log_began_at, key_id, self._sign_genesis(key_id, began_at, log_began_at)
        )

    def genesis_holds(self, genesis: Genesis) -> bool:
        expected = self._sign_genesis(genesis.key_id, genesis.began_at, genesis.log_began_at)
        return hmac.compare_digest(expected, genesis.digest)

    def _sign_genesis(self, key_id: str, began_at: int, log_began_at: int) -> bytes:
        message = _GENESIS + struct.pack(">QQ", began_at, log_began_at)
        return hmac.new(self._keys[key_id], message, hashlib.sha256).digest()

    def checkpoint(self, *, position: int, began_at: int, digest: bytes) -> Checkpoint:
        key_id = self.signing_key_id
        signature = self._sign_checkpoint(key_id, position, began_at, digest)
        return Checkpoint(position, began_at, digest, key_id, signature)

    def checkpoint_holds(self, checkpoint: Checkpoint) -> bool:
        expected = self._sign_checkpoint(
            checkpoint.key_id, checkpoint.position, checkpoint.began_at, checkpoint.digest
        )
        return hmac.compare_digest(expected, checkpoint.signature)

    def _sign_checkpoint(self, key_id: str, position: int, began_at: int, digest: bytes) -> bytes:
        message = _CHECKPOINT + struct.pack(">QQ", position, began_at) + digest
        return hmac.new(self._keys[key_id], message, hashlib.sha256).digest()

    def extend(
        self,
        events: Sequence[NewEvent],
        previous: Callable[[UUID, int], bytes | None],
        tail: Tail,
    ) -> tuple[list[Link], Genesis | None]:
        """Links for the events of one insert, and the genesis to store if there is none.

        `previous(id, version)` is the stored link of that version (for the first event
        of each aggregate in the insert); later ones chain to those made here. `tail` is
        the chain as the insert's lock found it.
        """
        if not events:
            return [], None
        ordered = sorted(events, key=lambda e: e[0])
        genesis, new_genesis = tail.genesis, None
        if genesis is None:
            first = ordered[0][0]
            began_at = min(first, tail.first_linked) if tail.first_linked is not None else first
            genesis = new_genesis = self.genesis(began_at=began_at, log_began_at=first)
        log_previous = (
            tail.last if tail.last is not None and new_genesis is None else (0, genesis.digest)
        )
        made: dict[UUID, tuple[int, bytes]] = {}
        links = []
        for position, originator_id, version, topic, state in ordered:
            before = made.get(originator_id)
            if before is not None and before[0] == version - 1:
                prior: bytes | None = before[1]
            else:
                prior = previous(originator_id, version - 1) if version > 1 else None
            digest = self.digest(
                self.signing_key_id,
                originator_id=originator_id,
                version=version,
                position=position,
                topic=topic,
                state=state,
                previous=prior,
                log_previous=log_previous,
            )
            made[originator_id] = (version, digest)
            links.append(
                Link(
                    originator_id,
                    version,
                    position,
                    self.signing_key_id,
                    digest,
                    previous_position=log_previous[0],
                )
            )
            log_previous = (position, digest)
        return links, new_genesis


class ChainedLog(Protocol):
    """What the verifier reads: the log with its links (a chained recorder)."""

    chain: ChainKeyring | None

    def select_linked(self, start: int, limit: int) -> Sequence[LinkedEvent]:
        """Events from position `start` on, in log order, each with its link."""
        ...

    def orphan_links(self) -> Sequence[Link]:
        """Links whose event is no longer in the log, in the order they were made."""
        ...

    def chain_tail(self) -> Tail:
        """The genesis and the newest link of the log chain, as they are now."""
        ...

    def max_notification_id(self) -> int | None: ...
