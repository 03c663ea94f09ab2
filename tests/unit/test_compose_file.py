"""deploy/compose.yaml runs what the README says: PostgreSQL, `db upgrade` first, one web
process with 2 workers that leaves projections and dispatch to their own processes, one
`project`, one `dispatch`, Prometheus; each with a health check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_the_processes_are_the_production_split() -> None:
    services = compose()["services"]

    assert services["serve"]["command"] == [
        "serve",
        "--no-projections",
        "--no-dispatcher",
        "--workers",
        "2",
    ]
    assert services["project"]["command"] == ["project"]
    assert services["dispatch"]["command"] == ["dispatch"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")


def test_every_dmledger_process_waits_for_the_schema_upgrade() -> None:
    services = compose()["services"]

    for name in ("serve", "project", "dispatch"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]

    for name in ("postgres", "serve", "project", "dispatch", "prometheus"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["serve"]["healthcheck"]["test"])


def test_prometheus_is_given_the_scrape_configuration_of_deploy() -> None:
    prometheus = compose()["services"]["prometheus"]
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())

    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    targets = {
        target
        for job in scrape["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert targets == {"serve:8000", "project:9464", "dispatch:9464"}


def test_published_ports_are_on_loopback_only() -> None:
    services = compose()["services"]

    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
