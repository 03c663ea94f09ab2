"""deploy/compose.yaml brought up by a Docker engine: an account registered in the web
container, a webhook signed as Meta signs it, stored and answered 200.

Where no Docker engine answers (`docker info` fails), the test skips and says why. No
setting or marker turns it off where an engine answers: CI on such a machine runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from application.ingest import sign
from infrastructure.secret_box import FernetSecretBox

pytestmark = pytest.mark.heavy

DEPLOY = Path(__file__).parents[2] / "deploy"
ACCOUNT = "17841400000000001"
APP_SECRET = "compose-app-secret"


def docker_engine() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    found = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if found.returncode != 0:
        said = (found.stderr or found.stdout).strip().splitlines()
        return f"no Docker engine answers `docker info`: {said[-1] if said else found.returncode}"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stack() -> Iterator[tuple[list[str], dict[str, str], str]]:
    """The compose project up and healthy: its command prefix, environment, and URL."""
    missing = docker_engine()
    if missing is not None:
        pytest.skip(missing)
    port = _free_port()
    env = {
        **os.environ,
        "DMLEDGER_SECRET_KEY": FernetSecretBox.new_key(),
        "DMLEDGER_METRICS_TOKEN": uuid.uuid4().hex,
        "POSTGRES_PASSWORD": uuid.uuid4().hex,
        "DMLEDGER_HOST_PORT": str(port),
        "PROMETHEUS_HOST_PORT": str(_free_port()),
    }
    compose = [
        "docker",
        "compose",
        "--project-directory",
        str(DEPLOY),
        "-f",
        str(DEPLOY / "compose.yaml"),
        "-p",
        f"dmledger-test-{uuid.uuid4().hex[:8]}",
    ]
    try:
        subprocess.run(
            [*compose, "up", "-d", "--build", "--wait", "--wait-timeout", "300"],
            env=env,
            check=True,
            timeout=900,
        )
        yield compose, env, f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, check=False, timeout=300)


def test_the_stack_stores_a_signed_webhook(stack: tuple[list[str], dict[str, str], str]) -> None:
    compose, env, url = stack
    # given an account, registered in the web container as an operator would
    subprocess.run(
        [
            *compose,
            "exec",
            "-T",
            "serve",
            "dmledger",
            "accounts",
            "add",
            "--ig-id",
            ACCOUNT,
            "--username",
            "shop",
            "--app-secret",
            "-",
            "--access-token",
            "-",
            "--verify-token",
            "compose-verify-token",
        ],
        input=f"{APP_SECRET}\nIGAA-compose-token\n",
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    now = int(time.time() * 1000)
    body = json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": ACCOUNT,
                    "time": now,
                    "messaging": [
                        {
                            "sender": {"id": "5500000000000001"},
                            "recipient": {"id": ACCOUNT},
                            "timestamp": now,
                            "message": {"mid": "mid-compose-1", "text": "Hello"},
                        }
                    ],
                }
            ],
        }
    ).encode()

    # when Meta posts a signed webhook
    answer = httpx.post(
        f"{url}/webhooks/instagram",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, APP_SECRET)},
        timeout=30,
    )

    # then it is answered 200 and stored, and the projection runner shows it
    assert answer.status_code == 200, answer.text
    replayed = subprocess.run(
        [*compose, "exec", "-T", "serve", "dmledger", "replay", "--account", ACCOUNT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert "mid-compose-1" in replayed.stdout
    deadline = time.monotonic() + 60
    while True:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        lags = [p["lag"] for p in ready["projections"]]
        if all(lag == 0 for lag in lags) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(lag == 0 for lag in lags), ready
