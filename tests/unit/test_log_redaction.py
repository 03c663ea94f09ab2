"""No log record shows a secret: those the process holds, whatever they look like, and
those shaped like one; the records keep their shape for the filters that read them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from infrastructure.secret_box import FernetSecretBox
from infrastructure.secret_redaction import KnownSecrets, redact
from interfaces.logging_setup import configure_logging, install_redaction
from interfaces.refusal_log import RateLimitedAccessLog

log = logging.getLogger("tests.redaction")


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging("debug", "json", stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_secret_that_looks_like_nothing_is_masked_once_the_secret_box_has_held_it(
    written: io.StringIO,
) -> None:
    # given an app secret with no recognisable shape, stored and read back through the box
    box = FernetSecretBox([FernetSecretBox.new_key()])
    secret = "plain words 4 an app secret"
    assert box.decrypt(box.encrypt(secret)) == secret

    # when it is logged as an argument, in a message, and in an error
    log.debug("checking with %s", secret)
    log.info(f"checking with {secret}!")
    try:
        raise ValueError(f"bad secret {secret}")
    except ValueError:
        log.exception("failed")

    # then no line shows it, and each still says what happened
    text = written.getvalue()
    assert secret not in text
    assert [line["message"] for line in lines(written)] == [
        "checking with ***",
        "checking with ***!",
        "failed",
    ]
    assert "bad secret ***" in lines(written)[2]["error"]


@pytest.mark.parametrize(
    ("logged", "shown"),
    [
        (
            "GET https://graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token"
            "&access_token=IGQVJ-never-seen-before",
            "GET https://graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token"
            "&access_token=***",
        ),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw!", "secret ***!"),
        ("key dml_0a1b2c3d4e5f_x-Yz_123 used", "key *** used"),
        ("Authorization: Bearer IGAA.abc-def", "Authorization: Bearer ***"),
        (
            "/webhooks/instagram?hub.verify_token=v1&hub.challenge=7",
            "/webhooks/instagram?hub.verify_token=***&hub.challenge=7",
        ),
        ("postgresql://app:pa55word@db:5432/x", "postgresql://app:***@db:5432/x"),
        ('{"access_token": "IGAA-new", "expires_in": 5}', '{"access_token": ***, "expires_in": 5}'),
    ],
)
def test_what_is_shaped_like_a_secret_is_masked(logged: str, shown: str) -> None:
    assert redact(logged) == shown


def test_a_json_line_stays_json_when_a_masked_value_was_quoted(written: io.StringIO) -> None:
    log.warning('sent "Bearer IGAA-x" and "access_token=IGAA-y"')

    assert lines(written)[0]["message"] == 'sent "Bearer ***" and "access_token=***"'


def test_a_short_secret_is_not_remembered_lest_it_mask_ordinary_words() -> None:
    known = KnownSecrets()
    known.remember("shop")
    known.remember("the-longer-secret")

    assert known.mask("shop the-longer-secret shop") == "shop *** shop"


def test_the_longest_known_secret_at_a_position_is_masked_whole() -> None:
    known = KnownSecrets()
    known.remember("abcdefgh")
    known.remember("abcdefgh-and-more")

    assert known.mask("x abcdefgh-and-more y abcdefgh") == "x *** y ***"


def test_an_access_log_record_keeps_its_arguments_for_the_rate_limit() -> None:
    # given uvicorn's access line for a refused webhook, with a verify token in another
    install_redaction()
    access = logging.getLogger("uvicorn.access")
    args = ("127.0.0.1:5000", "POST", "/webhooks/instagram", "1.1", 401)
    record = access.makeRecord(
        access.name, logging.INFO, "f", 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    verify = access.makeRecord(
        access.name,
        logging.INFO,
        "f",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/webhooks/instagram?hub.verify_token=s3cret-token", "1.1", 200),
        None,
    )

    # then both keep their five arguments, the token masked in its own
    assert record.args == args
    assert isinstance(verify.args, tuple)
    assert verify.args[2] == "/webhooks/instagram?hub.verify_token=***"
    limit = RateLimitedAccessLog(burst=0)
    assert (limit.filter(record), limit.filter(verify)) == (False, True)
