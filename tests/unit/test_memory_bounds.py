"""What a web worker keeps in memory stays bounded however many conversations it sees (P6),
and what it forgot is read back right. The profile lookups' bound and the shared reading's
window are tested with the rest of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest

from application.changes import Changes
from application.ledger import Ledger
from domain.conversation import Conversation
from infrastructure import chained_recorders
from infrastructure.chained_recorders import chain_verifier, install_chain
from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox
from infrastructure.settings import Settings
from interfaces.composition import build
from interfaces.http.app import create_app
from projections.projection import ID_TEXTS_KEPT, id_text

ACCOUNT = "17841400000000001"
NOW = 1_800_000_000_000


def test_id_text_remembers_at_most_its_bound_and_still_answers_past_it() -> None:
    id_text.cache_clear()
    ids = [uuid4() for _ in range(ID_TEXTS_KEPT + 10)]

    assert [id_text(i) for i in ids] == [str(i) for i in ids]
    assert id_text(ids[0]) == str(ids[0])  # forgotten, made again
    assert id_text.cache_info().currsize == ID_TEXTS_KEPT


@pytest.mark.postgres
def test_the_recorder_remembers_a_bounded_number_of_last_links_and_reads_back_the_rest(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chained_recorders, "LAST_LINKS_KEPT", 2)
    ledger = Ledger(env=persistence_env(postgres_url))
    assert install_chain(ledger.recorder, [FernetSecretBox.new_key()])
    try:
        # given three conversations written by this process, one more than it remembers
        conversations = [
            Conversation(ig_account_id=ACCOUNT, participant_id=f"{n}") for n in (1, 2, 3)
        ]
        for conversation in conversations:
            conversation.receive_message(mid=f"m-{conversation.participant_id}", sent_at=NOW)
            ledger.save(conversation)
        remembered = ledger.recorder._last_links  # type: ignore[attr-defined]
        assert len(remembered) == 2
        # when each is extended, the first from its link read back from the store
        for conversation in conversations:
            conversation.receive_message(mid=f"n-{conversation.participant_id}", sent_at=NOW)
            ledger.save(conversation)

        # then it still remembers two, and every event is linked to the one before it
        assert len(remembered) == 2
        verifier = chain_verifier(ledger.recorder)
        assert verifier is not None
        report = verifier.verify()
        assert report.intact
        assert report.chained == 9
    finally:
        ledger.close()


@pytest.mark.parametrize("runners", [True, False])
def test_a_web_process_keeps_sealed_keys_only_for_runners_of_its_own(
    runners: bool, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    services = build(make_settings(f"sqlite:///{tmp_path}/ledger.sqlite3"), announce=lambda _: None)
    try:
        create_app(services, run_projections=runners, run_dispatcher=False)

        def receive(changes: Changes) -> bool:
            conversation = Conversation(ig_account_id=ACCOUNT, participant_id="1")
            changes.add(conversation)
            return conversation.receive_message(mid="m-1", sent_at=NOW, text="hi")

        assert services.writer.run_now(receive)
        vault = services.ledger.vault
        assert vault is not None
        # `serve --no-projections`: no runner here would ever open (and let go) the key
        assert len(vault._recent) == (1 if runners else 0)
    finally:
        services.close()
