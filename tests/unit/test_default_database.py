"""Where the default database and data directory are, resolved once at start-up: the
checkout dmledger runs from, else the current directory; never wherever a later `cd` is."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.persistence import describe_database
from infrastructure.settings import Settings, default_directory

CHECKOUT = Path(__file__).resolve().parents[2]


def test_from_a_checkout_the_default_database_is_the_checkouts_wherever_the_cwd(
    tmp_path: Path,
) -> None:
    settings = Settings.from_environ({}, cwd=tmp_path)

    assert settings.database_url == f"sqlite:///{CHECKOUT}/var/dmledger.sqlite3"
    assert settings.data_dir == str(CHECKOUT / "var")


def test_an_installed_dmledger_keeps_its_default_data_in_the_current_directory(
    tmp_path: Path,
) -> None:
    site_packages = tmp_path / "site-packages"  # no pyproject.toml of dmledger there
    site_packages.mkdir()

    assert default_directory(tmp_path / "work", source=site_packages) == tmp_path / "work"


def test_relative_paths_are_resolved_against_the_directory_of_the_start(
    tmp_path: Path,
) -> None:
    settings = Settings.from_environ(
        {"DMLEDGER_DATABASE_URL": "sqlite:///data/x.sqlite3", "DMLEDGER_DATA_DIR": "keys"},
        cwd=tmp_path,
    )

    assert settings.database_url == f"sqlite:///{tmp_path}/data/x.sqlite3"
    assert settings.data_dir == str(tmp_path / "keys")


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("sqlite:////srv/d/dmledger.sqlite3", "SQLite /srv/d/dmledger.sqlite3"),
        ("memory://", "memory:// (nothing is kept)"),
        (
            "postgresql://app:s3cret@db.internal:5433/ledger?schema=live&password=s3cret",
            "postgresql://app@db.internal:5433/ledger?schema=live",
        ),
    ],
)
def test_the_database_is_described_without_its_password(url: str, described: str) -> None:
    assert describe_database(url) == described
