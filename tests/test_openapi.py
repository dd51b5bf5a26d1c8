"""schemathesis against the service's own OpenAPI document: requests generated from it, valid and not, with
a key of every right; none may end in a server error, and every error is a problem document."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from docsieve import keys
from docsieve.service import create_app
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import fixture_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("openapi")
    configured = Settings(store=f"sqlite:///{folder / 'api.db'}", api_rate=0, api_max_documents=50)
    store = Store(configured.store, fingerprints=configured.fingerprint_parameters)
    try:
        key = keys.create(store, "admin", "schemathesis")[1]
    finally:
        store.close()
    app = create_app(configured)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:  # some records and a story for the generated ids to miss or hit
        client.post(
            "/v1/documents",
            json=[
                {"id": "a", "text": fixture_text("ar_near_a.txt")},
                {"id": "b", "text": fixture_text("ar_near_b.txt")},
            ],
            headers={"X-API-Key": key},
        )
        yield app, key


def test_no_generated_request_is_a_server_error(service) -> None:
    app, key = service
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    answered: list[int] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        # derandomize: the same examples every run. Twice in full runs of the suite (never alone) a random run
        # spent over ten minutes in Hypothesis's mutation of an example, which duplicates parts of it.
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
        )
        def no_server_error(case) -> None:
            if case.path == "/v1/urls":  # no network: the fetcher has its own tests
                case.body = {"urls": ["http://127.0.0.1:9/nothing"]}
            response = case.call(headers={"X-API-Key": key})
            answered.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text)
            if response.status_code >= 400:
                kind = response.headers.get("content-type", [""])
                assert "application/problem+json" in str(kind), (case.method, case.path, response.text)

        no_server_error()
    # Many requests, most of them answered (not only refused at the door): the generated ones reach the routes.
    assert len(answered) > 10 * len(operations)
    assert sum(code < 400 for code in answered) > len(answered) // 4
