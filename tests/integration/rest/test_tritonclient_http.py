"""tritonclient's HTTP client, unchanged, against `modelwire serve --rest-port`."""

from __future__ import annotations

import pytest

from tests.conftest import RestServeProcess
from tests.integration.triton import (
    check_errors,
    check_health_and_metadata,
    check_inference,
    check_repository,
    run_checks,
)


@pytest.fixture(scope="module")
def results(rest_serve_process: RestServeProcess) -> dict[str, object]:
    target = rest_serve_process.rest_target
    assert any(f"REST gateway on http://{target}" in line for line in rest_serve_process.serve.log)
    return run_checks("http", target)


def test_health_and_metadata(results: dict[str, object]) -> None:
    check_health_and_metadata(results)


def test_infer_binary_json_and_compressed(results: dict[str, object]) -> None:
    check_inference(results)
    assert results["json_equal"] is True
    assert results["json_id"] == "json-1"
    assert results["gzip_equal"] is True


def test_repository_extension(results: dict[str, object]) -> None:
    check_repository(results)


def test_errors_reach_the_client_with_their_codes(results: dict[str, object]) -> None:
    check_errors(results, invalid="400", not_found="404")
