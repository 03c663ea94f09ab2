"""Settings from the environment, and the event store chosen by the database URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.persistence import persistence_env
from infrastructure.secret_box import FernetSecretBox, SecretDecryptionError, SecretKeyError
from infrastructure.settings import Settings, SettingsError, default_directory


def test_defaults_serve_sqlite_under_var_on_loopback() -> None:
    settings = Settings.from_environ({})

    var = default_directory(Path.cwd()) / "var"
    assert settings.database_url == f"sqlite:///{var}/dmledger.sqlite3"
    assert (settings.host, settings.port, settings.environment) == (
        "127.0.0.1",
        8000,
        "development",
    )


def test_values_are_read_from_prefixed_variables() -> None:
    settings = Settings.from_environ(
        {
            "DMLEDGER_DATABASE_URL": "postgresql://u:p@127.0.0.1:5433/db",
            "DMLEDGER_SECRET_KEY": "k1, k2",
            "DMLEDGER_ENV": "production",
            "DMLEDGER_PORT": "9000",
            "DMLEDGER_LOG_LEVEL": "DEBUG",
            "DMLEDGER_WEBHOOK_MAX_BODY_BYTES": "2048",
        }
    )

    assert settings.secret_keys == ("k1", "k2")
    assert settings.is_production
    assert (settings.port, settings.log_level, settings.webhook_max_body_bytes) == (
        9000,
        "debug",
        2048,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DMLEDGER_PORT", "eighty"),
        ("DMLEDGER_PORT", "70000"),
        ("DMLEDGER_ENV", "staging"),
        ("DMLEDGER_LOG_LEVEL", "loud"),
        ("DMLEDGER_LOG_FORMAT", "xml"),
        ("DMLEDGER_DATABASE_URL", "mysql://x/y"),
        ("DMLEDGER_WEBHOOK_MAX_BODY_BYTES", "-1"),
        ("DMLEDGER_DISPATCH_LEASE_SECONDS", "0"),
        ("DMLEDGER_DISPATCH_LEASE_SECONDS", "a minute"),
        ("DMLEDGER_CRM_RETRY_SCHEDULE", "5,5m"),
        ("DMLEDGER_CRM_RETRY_SCHEDULE", "5,-1"),
        ("DMLEDGER_CRM_RETRY_SCHEDULE", "5,,10"),
        ("DMLEDGER_CRM_RETRY_SCHEDULE", ",".join(["1"] * 51)),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_environ({variable: value})


def test_a_dispatcher_holds_its_leases_a_minute_unless_told_otherwise() -> None:
    assert Settings.from_environ({}).dispatch_lease_seconds == 60
    assert (
        Settings.from_environ({"DMLEDGER_DISPATCH_LEASE_SECONDS": "5"}).dispatch_lease_seconds == 5
    )


def test_the_crm_retry_schedule_is_the_documented_ladder_unless_told_otherwise() -> None:
    assert Settings.from_environ({}).crm_retry_schedule_seconds == (
        5, 300, 1800, 7200, 18000, 36000, 36000
    )  # fmt: skip
    short = Settings.from_environ({"DMLEDGER_CRM_RETRY_SCHEDULE": " 1, 2 ,30"})
    assert short.crm_retry_schedule_seconds == (1, 2, 30)
    never = Settings.from_environ({"DMLEDGER_CRM_RETRY_SCHEDULE": "none"})
    assert never.crm_retry_schedule_seconds == ()


def test_postgres_url_becomes_the_postgres_module_env() -> None:
    env = persistence_env("postgresql://me:p%40ss@127.0.0.1:5433/ledger?schema=s1")

    assert env["PERSISTENCE_MODULE"] == "infrastructure.postgres_recorder:LedgerPostgresFactory"
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]) == ("me", "p@ss")
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == ("127.0.0.1", "5433")
    assert (env["POSTGRES_DBNAME"], env["POSTGRES_SCHEMA"]) == ("ledger", "s1")
    assert env["POSTGRES_ENABLE_DB_FUNCTIONS"] == "n"


def test_sqlite_urls_follow_sqlalchemy_paths(tmp_path: object) -> None:
    assert persistence_env("sqlite:///:memory:")["SQLITE_DBNAME"] == ":memory:"
    assert persistence_env(f"sqlite:///{tmp_path}/x.db")["SQLITE_DBNAME"] == f"{tmp_path}/x.db"
    with pytest.raises(SettingsError):
        persistence_env("sqlite://")


def test_secret_box_decrypts_under_older_keys_and_encrypts_under_the_newest() -> None:
    old, new = FernetSecretBox.new_key(), FernetSecretBox.new_key()
    sealed_before = FernetSecretBox([old]).encrypt("token")

    rotated = FernetSecretBox([new, old])

    assert rotated.decrypt(sealed_before) == "token"
    assert FernetSecretBox([new]).decrypt(rotated.encrypt("token")) == "token"
    with pytest.raises(SecretDecryptionError):
        FernetSecretBox([new]).decrypt(sealed_before)


def test_a_key_that_is_not_fernet_is_refused_without_echoing_it() -> None:
    with pytest.raises(SecretKeyError) as raised:
        FernetSecretBox(["not-a-key-at-all"])

    assert "not-a-key-at-all" not in str(raised.value)
    assert "secret key #1" in str(raised.value)
