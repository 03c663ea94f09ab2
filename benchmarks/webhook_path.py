"""The event loop's own cost of a webhook, without a socket: CPU per `POST /webhooks/instagram`
of the thread that runs the ASGI app (issue 17).

`python -m benchmarks.webhook_path [--requests 3000] [--profile FILE]`

dmledger's app (`create_app`, without projection runners and dispatcher) over an
in-memory store, with the benchmark accounts, driven directly through ASGI, one webhook
at a time: P1's bodies, signed. The figure is `time.thread_time()` of the loop thread per
webhook (the ledger writer's thread does not count), so it is what Litestar, dmledger's
wrappers, guard, hook, dependency and handler cost a request; uvicorn's parsing and the
socket are not in it (`benchmarks.main_thread` measures them with everything else).
`--profile` writes a cProfile of the measured requests (the loop thread only).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet

from benchmarks.load import BodyMaker, register_accounts, sign


def _services(data_dir: str) -> Any:
    from infrastructure.settings import Settings
    from interfaces.composition import build

    settings = Settings(
        database_url="memory://",
        secret_keys=(Fernet.generate_key().decode(),),
        data_dir=data_dir,
        log_level="warning",
        graph_api_url="http://127.0.0.1:9",
    )
    return build(settings, announce=lambda _: None)


async def _post(app: Any, body: bytes, signature: str) -> int:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-hub-signature-256", signature.encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/instagram",
        "raw_path": b"/webhooks/instagram",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _run(
    requests: int, rounds: int, profile: str | None, adjust: Callable[[Any], None] = lambda _: None
) -> list[float]:
    from interfaces.http.app import create_app

    with tempfile.TemporaryDirectory() as data_dir:
        services = _services(data_dir)
        register_accounts(services)
        app = create_app(services, run_projections=False, run_dispatcher=False)
        adjust(app)
        maker = BodyMaker(tag="path")
        per_webhook: list[float] = []
        async with app.lifespan():
            for body in maker.bodies(500):  # warm-up
                assert await _post(app, body.raw, sign(body.raw)) == 200
            profiler = cProfile.Profile(time.thread_time) if profile else None
            for _ in range(rounds):
                bodies = [(b.raw, sign(b.raw)) for b in maker.bodies(requests)]
                if profiler:
                    profiler.enable()
                started = time.thread_time()
                for raw, signature in bodies:
                    status = await _post(app, raw, signature)
                    assert status == 200, status
                per_webhook.append((time.thread_time() - started) / requests)
                if profiler:
                    profiler.disable()
        services.close()
        if profiler and profile:
            profiler.dump_stats(profile)
    return per_webhook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of the measured requests here")
    args = parser.parse_args(argv)
    per_webhook = asyncio.run(_run(args.requests, args.rounds, args.profile))
    runs = ", ".join(f"{1e6 * s:.0f}" for s in per_webhook)
    median = 1e6 * statistics.median(per_webhook)
    print(f"loop thread CPU per webhook: median {median:.0f} us ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
