from __future__ import annotations

import json

import pytest

import modelwire.errors as errors
from modelwire.rest.errors import error_response, http_code
from tests.unit.server.test_status import ERROR_TYPES


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_every_error_has_an_http_code(error_type: type[errors.ModelwireError]) -> None:
    assert 400 <= http_code(error_type("x")) < 600


def test_the_table() -> None:
    assert http_code(errors.InvalidInput("x")) == 400
    assert http_code(errors.TooLarge("x")) == 413
    assert http_code(errors.NotFound("x")) == 404
    assert http_code(errors.Overloaded("x")) == 429
    assert http_code(errors.NotReady("x")) == 503
    assert http_code(errors.AlreadyExists("x")) == 409
    assert http_code(errors.FailedPrecondition("x")) == 409
    assert http_code(errors.Unauthenticated("x")) == 401
    assert http_code(errors.PermissionDenied("x")) == 403
    assert http_code(errors.Unavailable("x")) == 503
    assert http_code(errors.ModelwireError("x")) == 500


def test_error_body_and_retry_after() -> None:
    response = error_response(errors.Overloaded("queue full", retry_after_s=2.2))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert json.loads(bytes(response.body)) == {"error": "queue full"}
    assert "retry-after" not in error_response(errors.NotFound("gone")).headers
