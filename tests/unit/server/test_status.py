from __future__ import annotations

import grpc
import pytest

import modelwire.errors as errors
from modelwire.server.status import status_code

ERROR_TYPES = [
    getattr(errors, name)
    for name in errors.__all__
    if isinstance(getattr(errors, name), type) and name != "ModelwireError"
]


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_every_error_has_a_status_code(error_type: type[errors.ModelwireError]) -> None:
    assert status_code(error_type("x")) not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def test_the_codes() -> None:
    assert status_code(errors.InvalidInput("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(errors.TooLarge("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(errors.NotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert status_code(errors.AlreadyExists("x")) == grpc.StatusCode.ALREADY_EXISTS
    assert status_code(errors.FailedPrecondition("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(errors.NotReady("x")) == grpc.StatusCode.UNAVAILABLE
    assert status_code(errors.Overloaded("x")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_code(errors.Unauthenticated("x")) == grpc.StatusCode.UNAUTHENTICATED
    assert status_code(errors.PermissionDenied("x")) == grpc.StatusCode.PERMISSION_DENIED
    assert status_code(errors.Unavailable("x")) == grpc.StatusCode.UNAVAILABLE


def test_subclasses_inherit_their_parents_code() -> None:
    class Truncated(errors.InvalidInput):
        pass

    assert status_code(Truncated("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(errors.ModelwireError("x")) == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_a_client_gets_back_the_error_or_its_general_class(
    error_type: type[errors.ModelwireError],
) -> None:
    """What the server sends for an error, the client turns into that class or the one
    above it that shares its code (TooLarge → InvalidInput, NotReady → Unavailable)."""
    received = errors.error_for_status(error_type.grpc_status)
    assert received.grpc_status == error_type.grpc_status
    assert issubclass(error_type, received) or received is errors.Unavailable


def test_codes_no_class_claims_are_plain_modelwire_errors() -> None:
    assert errors.error_for_status("INTERNAL") is errors.ModelwireError
    assert errors.error_for_status("UNKNOWN") is errors.ModelwireError
    assert errors.error_for_status("DEADLINE_EXCEEDED") is errors.Unavailable
