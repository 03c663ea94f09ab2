"""Several processes that start at once on one database all start (a deployment's web
workers, projection runners and dispatchers are started together)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from infrastructure.settings import Settings
from interfaces.composition import build

pytestmark = pytest.mark.postgres


def test_processes_starting_together_on_one_database_all_start(
    postgres_url: str, make_settings: Callable[..., Settings]
) -> None:
    # given a database whose tables the first process created
    settings = make_settings(postgres_url)
    build(settings, announce=lambda _: None).close()
    failures: list[BaseException] = []

    def start() -> None:
        try:
            build(settings, announce=lambda _: None).close()
        except Exception as error:
            failures.append(error)

    # when six processes start at the same moment, three times over
    for _ in range(3):
        starting = [threading.Thread(target=start) for _ in range(6)]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join(60)

    # then every one started
    assert failures == []
