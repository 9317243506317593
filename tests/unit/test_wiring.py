"""The composition root (``leadflow.wiring``) builds every function's services from the settings
and the ``Clients`` it is given — the one place the local runtime and tests swap clients — and the
admin app from the contexts' routers, which receive those services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from leadflow import wiring
from leadflow.kernel.settings import Settings
from leadflow.local.system import AWS_ENV, REGION, settings_env
from leadflow.platform.routes import ADMIN_ROUTES

SETTINGS = Settings.from_environ(settings_env("https://api.example.com"))


class Recorded(wiring.Clients):
    """Clients built on demand, each service's name recorded when its client is built."""

    def __init__(self) -> None:
        self.built: list[str] = []
        super().__init__(self._build)

    def _build(self, service: str) -> Any:
        self.built.append(service)
        return boto3.client(service, region_name=REGION)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    wiring.client.cache_clear()
    yield Recorded()
    wiring.client.cache_clear()


def every_function(settings: Settings, clients: wiring.Clients) -> list[Any]:
    """What each handler builds at cold start."""
    return [
        wiring.tracking_service(settings, clients),
        wiring.signed_events(settings, clients),
        wiring.server_events(settings, clients),
        wiring.trigger_service(settings, clients),
        wiring.lead_engine(settings, clients),
        wiring.report_service(settings, clients),
        wiring.feedback_service(settings, clients),
        wiring.step_runner(settings, wiring.send_service(settings, clients), clients),
        wiring.bulk_jobs(settings, clients),
        wiring.journey_changes(settings, clients),
        wiring.key_rotation(clients),
        wiring.admin_app(settings, clients),
    ]


def test_every_service_uses_the_clients_it_is_given(clients: Recorded) -> None:
    every_function(SETTINGS, clients)
    assert set(clients.built) == {"dynamodb", "stepfunctions", "ses", "sqs", "secretsmanager"}
    assert wiring.client.cache_info().currsize == 0  # no factory reached for the process's clients


def test_a_lazy_client_of_the_given_clients_is_built_at_its_first_use(clients: Recorded) -> None:
    runner = wiring.step_runner(SETTINGS, wiring.send_service(SETTINGS, clients), clients)
    assert sorted(set(clients.built)) == ["dynamodb", "ses"]  # SNS, EventBridge, SQS, Step Functions wait
    sqs = clients.lazy("sqs")
    assert sqs.meta.service_model.service_name == "sqs"
    assert clients.built[-1] == "sqs"
    assert runner is not None


def test_the_admin_app_serves_every_admin_route_from_the_routers(clients: Recorded) -> None:
    app = wiring.admin_app(SETTINGS, clients)
    served = {
        f"{method.upper()} {path}"
        for path, item in (app.get_openapi_schema().paths or {}).items()
        for method in ("get", "put", "post", "delete")
        if getattr(item, method, None) is not None
    }
    assert served == {route.key for route in ADMIN_ROUTES}
    assert set(clients.built) == {"dynamodb"}  # Step Functions (erasures) and SQS wait for their first use
