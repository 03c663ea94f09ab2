"""The `dmledger` command line, as an operator uses it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from interfaces.cli import main
from tests.conftest import ACCOUNT, APP_SECRET, TEST_KEY, meta_body, signed_headers
from tests.support.served import ADD, Served


def test_account_secrets_come_from_stdin_or_env_and_are_never_printed(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("app-secret-from-stdin\ntoken-from-stdin\n"))
    monkeypatch.setenv("MY_VERIFY_TOKEN", "verify-from-env")

    status = main(
        [*ADD, "--app-secret", "-", "--access-token", "-", "--verify-token", "env:MY_VERIFY_TOKEN"]
    )
    assert status == 0
    assert main(["accounts", "list"]) == 0
    assert main(["events", "--account", ACCOUNT, "--format", "jsonl"]) == 0

    out = capsys.readouterr().out
    assert f"registered Instagram account {ACCOUNT} (@shop)" in out
    assert "@shop" in out.splitlines()[2]
    for secret in ("app-secret-from-stdin", "token-from-stdin", "verify-from-env"):
        assert secret not in out
    registered = json.loads(out.splitlines()[-1])
    assert registered["type"] == "Account.Registered"
    assert registered["data"]["app_secret"] == "<redacted>"  # not even its ciphertext


def test_registering_an_account_twice_is_refused(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = ["--app-secret", "a", "--access-token", "b", "--verify-token", "c"]
    assert main([*ADD, *secrets]) == 0

    assert main([*ADD, *secrets]) == 2
    assert "already registered" in capsys.readouterr().err


def test_a_missing_secret_off_a_terminal_is_an_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    assert main([*ADD, "--app-secret", "a", "--access-token", "b"]) == 2
    assert "--verify-token is required" in capsys.readouterr().err


def test_a_bad_setting_is_reported_by_its_variable_name(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DMLEDGER_PORT", "http")

    assert main(["accounts", "list"]) == 2
    assert "DMLEDGER_PORT must be a whole number" in capsys.readouterr().err


def test_production_refuses_to_start_without_a_secret_key(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DMLEDGER_SECRET_KEY")
    monkeypatch.setenv("DMLEDGER_ENV", "production")

    assert main(["serve"]) == 2
    assert "DMLEDGER_SECRET_KEY must be set in production" in capsys.readouterr().err


def test_development_generates_a_key_once_and_keeps_it(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DMLEDGER_SECRET_KEY")
    secrets = ["--app-secret", "a", "--access-token", "b", "--verify-token", "c"]

    assert main([*ADD, *secrets]) == 0
    first = capsys.readouterr().err
    assert main(["accounts", "list"]) == 0
    second = capsys.readouterr().err

    assert "generated a development key" in first
    assert "generated" not in second
    assert (Path(env["DMLEDGER_DATA_DIR"]) / "development-secret.key").exists()


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[Served]:
    server = Served(env)
    yield server
    server.stop()


def test_readme_journey_register_serve_post_a_signed_webhook_and_see_its_events(
    env: dict[str, str], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an account registered from the CLI while the service runs
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    body = meta_body("text")

    # when Meta posts a signed webhook
    response = httpx.post(
        served.url + "/webhooks/instagram", content=body, headers=signed_headers(body)
    )

    # then it is acknowledged and the CLI shows the stored message
    assert (response.status_code, response.text) == (200, "EVENT_RECEIVED")
    assert main(["events", "--account", ACCOUNT]) == 0
    assert "Conversation.MessageReceived" in capsys.readouterr().out


def test_the_verify_token_stays_out_of_the_access_log(env: dict[str, str], served: Served) -> None:
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v-s3cret"]
    assert main([*ADD, *secrets]) == 0
    params = {"hub.mode": "subscribe", "hub.verify_token": "v-s3cret", "hub.challenge": "7"}

    assert httpx.get(served.url + "/webhooks/instagram", params=params).text == "7"
    served.stop()

    assert "hub.mode=subscribe" in served.output
    assert "v-s3cret" not in served.output


def test_keys_are_shown_once_listed_without_secrets_and_revocable(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = ["--app-secret", "a", "--access-token", "b", "--verify-token", "c"]
    assert main([*ADD, *secrets]) == 0
    assert main(["keys", "create", "--name", "bootstrap", "--admin"]) == 0
    assert main(["keys", "create", "--name", "crm", "--account", ACCOUNT]) == 0
    created = capsys.readouterr().out.splitlines()
    tokens = [line for line in created if line.startswith("dml_")]
    assert len(tokens) == 2
    crm_key_id = tokens[1].split("_")[1]

    assert main(["keys", "revoke", crm_key_id]) == 0
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out

    assert "bootstrap" in listing
    assert "admin" in listing
    assert "revoked" in listing
    assert all(token.split("_", 2)[2] not in listing for token in tokens)


def test_an_account_key_for_an_unknown_account_is_refused(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--name", "crm", "--account", "1234"]) == 2
    assert "not registered" in capsys.readouterr().err


def test_projections_status_and_rebuild(
    env: dict[str, str], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    body = meta_body("text")
    assert (
        httpx.post(
            served.url + "/webhooks/instagram", content=body, headers=signed_headers(body)
        ).status_code
        == 200
    )
    served.stop()
    capsys.readouterr()

    assert main(["projections", "rebuild", "message_history"]) == 0
    assert "rebuilt message_history from 3 events" in capsys.readouterr().out
    assert main(["projections", "status"]) == 0
    status = capsys.readouterr().out.splitlines()

    assert status[0].split() == ["PROJECTION", "POSITION", "HEAD", "LAG", "PARKED"]
    assert ["message_history", "3", "3", "0", "0"] in [line.split() for line in status]
    assert main(["projections", "rebuild", "nonsense"]) == 2


def test_projections_rebuild_all_rebuilds_every_read_model_in_one_pass(
    env: dict[str, str], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a message the served runners projected
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    body = meta_body("text")
    response = httpx.post(
        served.url + "/webhooks/instagram", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 200
    served.stop()
    capsys.readouterr()

    # when every read model is rebuilt, and then two of them
    assert main(["projections", "rebuild", "all"]) == 0
    out = capsys.readouterr().out
    assert main(["projections", "rebuild", "conversation_list", "outbox"]) == 0
    two = capsys.readouterr().out

    # then each says so, and every view stands at the head of the log
    assert "rebuilt conversation_list, message_history, outbox, comments from 3 events" in out
    assert "rebuilt conversation_list, outbox from 3 events" in two
    assert main(["projections", "status"]) == 0
    status = [line.split() for line in capsys.readouterr().out.splitlines()]
    for name in ("conversation_list", "message_history", "outbox", "comments"):
        assert [name, "3", "3", "0", "0"] in status
    assert main(["projections", "rebuild", "outbox", "auto_reply"]) == 2


def test_a_crm_reads_a_message_through_the_served_api(
    env: dict[str, str], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    assert main(["keys", "create", "--name", "crm", "--account", ACCOUNT]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    body = meta_body("text")
    httpx.post(served.url + "/webhooks/instagram", content=body, headers=signed_headers(body))
    base = f"{served.url}/api/v1/accounts/{ACCOUNT}/conversations"

    deadline = time.monotonic() + 1.0
    while True:
        listing = httpx.get(base, headers={"authorization": f"Bearer {token}"}).json()
        if listing["conversations"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)

    [conversation] = listing["conversations"]
    messages = httpx.get(
        f"{base}/{conversation['id']}/messages", headers={"authorization": f"Bearer {token}"}
    ).json()["messages"]
    assert messages[0]["text"] == "Hi! Do you ship to München? 📦"


def test_rotating_the_secret_key_then_reencrypting_lets_the_old_key_go(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infrastructure.secret_box import FernetSecretBox
    from infrastructure.settings import Settings
    from interfaces.composition import build

    # given an account whose credentials were encrypted under the old key
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v-1"]
    assert main([*ADD, *secrets]) == 0
    old, new = env["DMLEDGER_SECRET_KEY"], FernetSecretBox.new_key()

    # when the new key goes first and the credentials are re-encrypted
    monkeypatch.setenv("DMLEDGER_SECRET_KEY", f"{new},{old}")
    assert main(["secrets", "reencrypt"]) == 0
    assert "re-encrypted the credentials of 1 accounts" in capsys.readouterr().out

    # then the new key alone can read them
    settings = Settings.from_environ({**env, "DMLEDGER_SECRET_KEY": new})
    services = build(settings, announce=lambda _: None)
    try:
        assert services.accounts.confirm_subscription("v-1") is True
        history = [type(e).__name__ for _, e in services.ledger.account_history(ACCOUNT)]
        assert history[-1] == "CredentialsReencrypted"
    finally:
        services.close()


def test_every_command_says_which_database_it_uses_resolved_from_where_it_started(
    tmp_path: Path,
) -> None:
    # given a relative SQLite path, and a command started in another directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        "DMLEDGER_DATABASE_URL": "sqlite:///data/ledger.sqlite3",
        "DMLEDGER_SECRET_KEY": TEST_KEY,
    }

    done = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", "accounts", "list"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert f"dmledger: database SQLite {elsewhere}/data/ledger.sqlite3\n" in done.stderr


def test_a_command_names_its_database_on_stderr(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DMLEDGER_DATABASE_URL", "memory://")

    assert main(["accounts", "list"]) == 0

    assert "dmledger: database memory:// (nothing is kept)" in capsys.readouterr().err


def test_a_rebuild_on_sqlite_is_refused_while_serve_follows_the_read_models(
    env: dict[str, str], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a message that the served runners projected
    secrets = ["--app-secret", APP_SECRET, "--access-token", "t", "--verify-token", "v"]
    assert main([*ADD, *secrets]) == 0
    body = meta_body("text")
    response = httpx.post(
        served.url + "/webhooks/instagram", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 200
    capsys.readouterr()

    # when a rebuild is asked for while serve runs, then after it stopped
    refused = main(["projections", "rebuild", "message_history"])
    refusal = capsys.readouterr().err
    served.stop()
    after = main(["projections", "rebuild", "message_history"])

    # then the first is refused, changing nothing, and the second goes
    assert refused == 2
    assert "'message_history' is being followed by another process" in refusal
    assert after == 0
    assert "rebuilt message_history from 3 events" in capsys.readouterr().out
