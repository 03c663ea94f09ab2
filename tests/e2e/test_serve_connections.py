"""`dmledger serve` closes idle and slow connections, and caps how many it holds open: a
real server on loopback, and raw sockets playing the slow client."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from tests.support.served import Served

Seconds = float


def _env(directory: Path, **settings: str) -> dict[str, str]:
    return {
        "DMLEDGER_DATABASE_URL": f"sqlite:///{directory}/ledger.sqlite3",
        "DMLEDGER_SECRET_KEY": TEST_KEY,
        "DMLEDGER_DATA_DIR": str(directory / "var"),
        "DMLEDGER_GRAPH_API_URL": "http://127.0.0.1:9",
        **{f"DMLEDGER_{name.upper()}": value for name, value in settings.items()},
    }


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that allows one second for headers, for a body, and between requests."""
    env = _env(
        tmp_path_factory.mktemp("strict"),
        header_timeout="1",
        body_timeout="1",
        keep_alive_timeout="1",
    )
    server = Served(env)
    yield server
    server.stop()


def connect(server: Served) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def seconds_until_closed(
    sock: socket.socket, within: Seconds, trickle: Callable[[], bytes] | None = None
) -> tuple[Seconds | None, bytes]:
    """How long until the server closes `sock` (None: not within `within`), and what it
    sent; `trickle` gives a few bytes to send every 0.2 s meanwhile, as a slow client."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < within:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if trickle is not None:
                try:
                    sock.sendall(trickle())
                except OSError:
                    return time.monotonic() - started, received
            continue
        except OSError:
            return time.monotonic() - started, received
        if not data:
            return time.monotonic() - started, received
        received += data
    return None, received


def test_a_connection_that_never_sends_a_request_is_closed(strict: Served) -> None:
    with connect(strict) as sock:
        closed_after, _ = seconds_until_closed(sock, within=6)

    assert closed_after is not None, "the idle connection was never closed"
    assert closed_after < 3


def test_headers_sent_a_byte_at_a_time_are_cut_off(strict: Served) -> None:
    with connect(strict) as sock:
        sock.sendall(b"POST /webhooks/instagram HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed_after, answer = seconds_until_closed(sock, within=6, trickle=lambda: b"X")

    assert closed_after is not None, "slow headers kept the connection open"
    assert closed_after < 3
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_a_body_sent_a_byte_at_a_time_is_cut_off(strict: Served) -> None:
    with connect(strict) as sock:
        sock.sendall(
            b"POST /webhooks/instagram HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        closed_after, _ = seconds_until_closed(sock, within=6, trickle=lambda: b" ")

    assert closed_after is not None, "a slow body kept the connection open"
    assert closed_after < 3


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    strict: Served,
) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        closed_after, answer = seconds_until_closed(sock, within=6)

    assert answer.startswith(b"HTTP/1.1 200")
    assert closed_after is not None
    assert closed_after < 3  # uvicorn's own default is 5 s


def test_connections_over_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    server = Served(_env(tmp_path, max_connections="3", header_timeout="30"))
    held: list[socket.socket] = []
    try:
        # given as many idle connections as the cap allows (one made by the start-up check
        # may linger a moment: wait until a fourth is refused)
        held = [connect(server) for _ in range(3)]
        deadline = time.monotonic() + 5
        while True:
            with connect(server) as extra:
                closed_after, _ = seconds_until_closed(extra, within=1)
            if closed_after is not None or time.monotonic() > deadline:
                break

        # then one more is closed at once, and the ones held still work
        assert closed_after is not None, "a connection over the cap was kept open"
        assert closed_after < 0.5
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        held[0].settimeout(5)
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
        server.stop()
