from __future__ import annotations

import grpc
import pytest

import modelwire.errors as errors
from modelwire.server.status import STATUS_CODES, status_code

ERROR_TYPES = [
    getattr(errors, name)
    for name in errors.__all__
    if isinstance(getattr(errors, name), type) and name != "ModelwireError"
]


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_every_error_has_a_status_code(error_type: type[errors.ModelwireError]) -> None:
    assert error_type in STATUS_CODES
    assert status_code(error_type("x")) not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def test_subclasses_inherit_their_parents_code() -> None:
    class Truncated(errors.InvalidInput):
        pass

    assert status_code(Truncated("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(errors.ModelwireError("x")) == grpc.StatusCode.INTERNAL
