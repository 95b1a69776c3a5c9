"""Every error a client sees says what was wrong in its own words: no traceback, file
path, internal name, memory address or token. A battery of bad requests on every service
and the REST gateway, with authentication on, and every message scanned."""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import httpx

from modelwire.api.compat import image_classifier_pb2 as compat_pb
from modelwire.api.compat import image_classifier_pb2_grpc as compat_grpc
from modelwire.api.oip import grpc_predict_v2_pb2 as oip_pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelwire.api.v1 import datasets_pb2 as data_pb
from modelwire.api.v1 import datasets_pb2_grpc as data_grpc
from modelwire.api.v1 import inference_pb2 as inf_pb
from modelwire.api.v1 import inference_pb2_grpc as inf_grpc
from modelwire.api.v1 import models_pb2 as models_pb
from modelwire.api.v1 import models_pb2_grpc as models_grpc
from modelwire.api.v1 import training_pb2 as train_pb
from modelwire.api.v1 import training_pb2_grpc as train_grpc
from tests.conftest import ServerFactory, rest_url
from tests.images import digit_bytes, png_header_claiming

LEAKS = [
    re.compile(r"Traceback|File \""),
    re.compile(r"\.py\b"),
    re.compile(r"/(usr|home|tmp|root|work|opt|var|proc|srv|site-packages)/"),
    re.compile(r"\b(KeyError|ValueError|TypeError|AttributeError|IndexError|RuntimeError)\b"),
    re.compile(r"\bmodelwire\.(core|server|rest|api)\b|grpc\._|_cython|pydantic_core"),
    re.compile(r"0x[0-9a-f]{6,}"),
]


def leaks(message: str, secrets: list[str]) -> list[str]:
    found = [pattern.pattern for pattern in LEAKS if pattern.search(message)]
    return found + ["a token" for secret in secrets if secret in message]


async def test_no_error_leaks_internals(
    start_server: ServerFactory, tokens: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    server = await start_server(tokens_file=tokens[0], rest_port=0, max_message_bytes=64 * 1024)
    by_role = tokens[1]
    secrets = list(by_role.values())
    messages: list[str] = []

    def auth(role: str) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {by_role[role]}"),)

    async def expect_error(call: Awaitable[Any]) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            messages.append(error.details() or "")
            return
        raise AssertionError("the call succeeded")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        inference = inf_grpc.InferenceServiceStub(channel)
        infer = auth("infer")
        for request in (
            inf_pb.ClassifyRequest(image=b""),
            inf_pb.ClassifyRequest(image=b"junk"),
            inf_pb.ClassifyRequest(image=digit_bytes(1)[:40]),
            inf_pb.ClassifyRequest(image=png_header_claiming(90_000, 90_000)),
            inf_pb.ClassifyRequest(image=b"x" * 100_000),  # over the message limit
            inf_pb.ClassifyRequest(model="../../secret", image=digit_bytes(1)),
            inf_pb.ClassifyRequest(model="nope", image=digit_bytes(1)),
            inf_pb.ClassifyRequest(version=99, image=digit_bytes(1)),
            inf_pb.ClassifyRequest(top_k=5000, image=digit_bytes(1)),
        ):
            await expect_error(inference.Classify(request, metadata=infer))
        compat = compat_grpc.ImageClassifierStub(channel)
        await expect_error(compat.ClassifyImage(compat_pb.Image(data=b"GIF89a"), metadata=infer))
        models = models_grpc.ModelServiceStub(channel)
        await expect_error(models.GetModel(models_pb.GetModelRequest(name="a/b"), metadata=infer))
        for call in (
            models.LoadModel(models_pb.LoadModelRequest(name="nope"), metadata=auth("admin")),
            models.UnloadModel(models_pb.UnloadModelRequest(name="nope"), metadata=auth("admin")),
            models.UnloadModel(models_pb.UnloadModelRequest(name="digits"), metadata=infer),
            models.UnloadModel(models_pb.UnloadModelRequest(name="digits")),
            models.UnloadModel(
                models_pb.UnloadModelRequest(name="digits"),
                metadata=(("authorization", "Bearer not-it"),),
            ),
        ):
            await expect_error(call)
        oip = oip_grpc.GRPCInferenceServiceStub(channel)
        tensor = oip_pb.ModelInferRequest.InferInputTensor
        for infer_request in (
            oip_pb.ModelInferRequest(model_name="digits"),
            oip_pb.ModelInferRequest(
                model_name="digits",
                inputs=[tensor(name="input", datatype="FP32", shape=[1, 1, 8, 8])],
                raw_input_contents=[b"\0" * 7],
            ),
            oip_pb.ModelInferRequest(
                model_name="digits",
                inputs=[tensor(name="input", datatype="BYTES", shape=[1])],
                raw_input_contents=[struct.pack("<I", 99) + b"x"],
            ),
            oip_pb.ModelInferRequest(
                model_name="digits",
                inputs=[tensor(name="input", datatype="INT8", shape=[1, 1, 8, 8])],
            ),
            oip_pb.ModelInferRequest(model_name="nope"),
        ):
            await expect_error(oip.ModelInfer(infer_request, metadata=infer))
        await expect_error(
            oip.RepositoryModelLoad(
                oip_pb.RepositoryModelLoadRequest(model_name="nope"), metadata=auth("admin")
            )
        )
        train = auth("train")
        data = data_grpc.DatasetServiceStub(channel)
        await expect_error(
            data.CreateDataset(data_pb.CreateDatasetRequest(name=".."), metadata=train)
        )
        await expect_error(data.GetDataset(data_pb.GetDatasetRequest(name="nope"), metadata=train))
        await data.CreateDataset(data_pb.CreateDatasetRequest(name="d"), metadata=train)

        async def uploads() -> AsyncIterator[data_pb.UploadExamplesRequest]:
            yield data_pb.UploadExamplesRequest(dataset="d", label="a\tb", image=digit_bytes(1))
            yield data_pb.UploadExamplesRequest(label="1", image=b"junk")
            yield data_pb.UploadExamplesRequest(label="1", image=digit_bytes(1)[:50])

        summary = await data.UploadExamples(uploads(), metadata=train)
        messages.extend(r.reason for r in summary.rejected)
        training = train_grpc.TrainingServiceStub(channel)
        for config in (
            train_pb.TrainingConfig(dataset="nope", model="m"),
            train_pb.TrainingConfig(dataset="d", model="m"),
            train_pb.TrainingConfig(dataset="d", model="m", epochs=99999),
        ):
            await expect_error(
                training.StartTraining(train_pb.StartTrainingRequest(config=config), metadata=train)
            )
        await expect_error(
            training.GetTrainingJob(train_pb.GetTrainingJobRequest(id="nope"), metadata=train)
        )

    headers = {"authorization": f"Bearer {by_role['infer']}"}
    png = {"content-type": "image/png"}
    as_json = {"content-type": "application/json"}
    classify, infer_path = "/v1/models/digits:classify", "/v2/models/digits/infer"
    letters = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [[[["a"]]]]}
    bad_http: list[tuple[str, dict[str, Any]]] = [
        (classify, {"content": b"junk", "headers": png}),
        (classify, {"content": b"{", "headers": as_json}),
        (classify, {"json": {"image_b64": "%%%"}}),
        (classify, {"content": b"x" * 70_000, "headers": png}),
        ("/v1/models/nope:classify", {"content": b"x", "headers": png}),
        (infer_path, {"json": {"inputs": [{"name": "input"}]}}),
        (infer_path, {"content": b"{}", "headers": {"inference-header-content-length": "x"}}),
        (infer_path, {"json": {"inputs": [letters]}}),
    ]
    async with httpx.AsyncClient(base_url=rest_url(server)) as http:
        for path, options in bad_http:
            merged = {**options.get("headers", {}), **headers}
            answer = await http.post(path, **{**options, "headers": merged})
            assert answer.status_code >= 400, path
            messages.append(answer.json()["error"])
        answer = await http.post("/v2/repository/index", json={})
        messages.append(answer.json()["error"])

    assert len(messages) >= 40
    assert all(message.strip() for message in messages)
    problems = {m: found for m in messages if (found := leaks(m, secrets))}
    assert not problems, problems
