"""`POST /v1/models/{name}:classify` against a live server: raw and JSON bodies, the same
answers as gRPC, and every error with its HTTP code and JSON body."""

from __future__ import annotations

import asyncio
import base64
import gzip
from pathlib import Path

import grpc
import httpx
import pytest

from modelwire.api.v1 import inference_pb2, inference_pb2_grpc
from modelwire.assembly import RunningServer
from tests.conftest import ServerFactory
from tests.images import (
    digit_bytes,
    digit_photo,
    digit_picture,
    encode,
    heldout_digits,
    png_header_claiming,
)
from tests.integration.rest.conftest import RestFactory
from tests.models import add_model

JPEG = {"content-type": "image/jpeg"}


async def test_raw_body_is_classified(http: httpx.AsyncClient) -> None:
    images, labels = heldout_digits()
    for pixels, label in list(zip(images, labels, strict=True))[:5]:
        picture = encode(digit_picture(pixels), "JPEG", quality=95)
        response = await http.post("/v1/models/digits:classify", content=picture, headers=JPEG)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model"] == "digits"
        assert answer["version"] == 1
        assert answer["classes"][0]["label"] == str(label)


async def test_json_and_raw_and_grpc_give_the_same_answer(
    rest: tuple[RunningServer, httpx.AsyncClient],
) -> None:
    server, http = rest
    image = digit_bytes(3)
    raw = await http.post(
        "/v1/models/digits:classify?top_k=3", content=image, headers={"content-type": "image/png"}
    )
    as_json = await http.post(
        "/v1/models/digits:classify",
        json={"image_b64": base64.b64encode(image).decode(), "top_k": 3},
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await stub.Classify(inference_pb2.ClassifyRequest(image=image, top_k=3))
    assert raw.status_code == as_json.status_code == 200
    assert raw.json() == as_json.json()
    classes = raw.json()["classes"]
    assert [c["label"] for c in classes] == [c.label for c in reply.classes]
    assert [c["score"] for c in classes] == pytest.approx([c.score for c in reply.classes])
    assert classes[0]["label"] == "3"
    assert classes[0]["index"] == 3
    assert classes[0]["score"] >= classes[1]["score"] >= classes[2]["score"]


async def test_version_route_and_compressed_body(http: httpx.AsyncClient) -> None:
    image = digit_bytes(5)
    response = await http.post(
        "/v1/models/digits/versions/1:classify",
        content=gzip.compress(image),
        headers={"content-type": "application/octet-stream", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["classes"][0]["label"] == "5"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [
        ("/v1/models/digits:classify", b"not an image", JPEG, 400, "is not a JPEG"),
        ("/v1/models/nope:classify", b"x", JPEG, 404, "model 'nope'"),
        ("/v1/models/digits/versions/7:classify", b"x", JPEG, 404, "version 7"),
        ("/v1/models/digits/versions/x:classify", b"x", JPEG, 400, "version"),
        ("/v1/models/digits:classify?top_k=0", b"x", JPEG, 400, "top_k"),
        ("/v1/models/digits:classify", b"x", {"content-type": "text/plain"}, 400, "text/plain"),
        (
            "/v1/models/digits:classify",
            b'{"image_b64": "***"}',
            {"content-type": "application/json"},
            400,
            "not valid base64",
        ),
        (
            "/v1/models/digits:classify",
            b'{"top_k": 2}',
            {"content-type": "application/json"},
            400,
            "image_b64",
        ),
        (
            "/v1/models/digits:classify",
            b"{not json",
            {"content-type": "application/json"},
            400,
            "invalid classify request",
        ),
        (
            "/v1/models/digits:classify",
            b"\x1f\x8b not gzip",
            {"content-type": "image/png", "content-encoding": "gzip"},
            400,
            "not valid gzip",
        ),
        (
            "/v1/models/digits:classify",
            b"x",
            {"content-type": "image/png", "content-encoding": "br"},
            400,
            "Content-Encoding 'br'",
        ),
        (
            "/v1/models/digits:classify",
            png_header_claiming(50_000, 50_000),
            {"content-type": "image/png"},
            413,
            "the limit is",
        ),
    ],
)
async def test_bad_requests_get_a_clear_error(
    http: httpx.AsyncClient,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    response = await http.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


async def test_body_over_the_limit_is_413(start_rest: RestFactory) -> None:
    _, http = await start_rest(max_message_bytes=4096)
    big = b"\0" * 5000
    response = await http.post("/v1/models/digits:classify", content=big, headers=JPEG)
    assert response.status_code == 413
    assert "larger than 4,096 bytes" in response.json()["error"]
    # A small body that inflates past the limit is refused the same way.
    bomb = gzip.compress(b"\0" * 100_000)
    assert len(bomb) < 4096
    response = await http.post(
        "/v1/models/digits:classify",
        content=bomb,
        headers={"content-type": "image/png", "content-encoding": "gzip"},
    )
    assert response.status_code == 413


async def test_unloaded_model_is_503(rest: tuple[RunningServer, httpx.AsyncClient]) -> None:
    server, http = rest
    await server.engine.models.unload("digits")
    response = await http.post("/v1/models/digits:classify", content=digit_bytes(1), headers=JPEG)
    assert response.status_code == 503
    assert "digits" in response.json()["error"]


async def test_full_queue_is_429_with_retry_after(start_rest: RestFactory, tmp_path: Path) -> None:
    add_model(tmp_path, "tiny-queue", tables="[batching]\nmax_batch_size = 1\nmax_queue_size = 2\n")
    _, http = await start_rest(model_repositories=[tmp_path])
    big = encode(digit_photo(heldout_digits()[0][0]).resize((1600, 1600)), "PNG")
    responses = await asyncio.gather(
        *(http.post("/v1/models/tiny-queue:classify", content=big, headers=JPEG) for _ in range(12))
    )
    codes = [r.status_code for r in responses]
    assert 200 in codes  # the first ones are served...
    refused = [r for r in responses if r.status_code == 429]
    assert refused  # ... the rest are refused at once
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert "the limit is 2" in response.json()["error"]


async def test_api_docs_describe_the_routes(http: httpx.AsyncClient) -> None:
    docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    assert "/v1/models/{name}:classify" in paths
    assert "/v2/models/{name}/infer" in paths
    body = paths["/v1/models/{name}:classify"]["post"]["requestBody"]["content"]
    assert {"image/*", "application/json"} <= set(body)
    components = schema["components"]["schemas"]
    assert {"ClassifyRequest", "ClassifyResponse", "InferenceRequest", "RequestInput"} <= set(
        components
    )


async def test_rest_port_off_serves_no_rest(start_server: ServerFactory) -> None:
    server = await start_server(rest_port="off")
    assert server.rest is None


async def test_rest_port_zero_picks_a_free_port_on_every_host(start_server: ServerFactory) -> None:
    server = await start_server(hosts=["127.0.0.1", "::1"], rest_port=0)
    assert server.rest is not None
    assert server.rest.port > 0
    assert {address.rpartition(":")[2] for address in server.rest.addresses} == {
        str(server.rest.port)
    }
