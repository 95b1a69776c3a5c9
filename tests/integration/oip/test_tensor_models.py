"""Tensor models (`task = "tensor"`) over the Open Inference Protocol: every datatype
round-trips unchanged through gRPC (typed and raw), REST (JSON and binary) and
tritonclient; several inputs and outputs; no batch axis; dynamic axes; metadata read
from the graph; and every bad input refused with INVALID_ARGUMENT naming the tensor."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelwire.assembly import RunningServer
from modelwire.datatypes import DATATYPES, to_raw
from modelwire.server.servicers.oip import TYPED_CONTENTS
from tests import processes
from tests.conftest import ServerFactory, rest_url
from tests.tensor_models import (
    ONNX_TYPES,
    VOCABULARY,
    identity_model,
    mixed_model,
    text_model,
    unbatched_model,
)

HERE = Path(__file__).resolve().parent
TYPED = tuple(t for t in ONNX_TYPES if t != "FP16")  # FP16 has no typed contents field


def sample(datatype: str) -> np.ndarray:
    """A [2, 3] tensor of the datatype with its extremes in it."""
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        texts = [b"hello", b"", "caf\u00e9".encode(), b"x" * 300, b"a b", b"\x01"]
        array = np.empty(6, dtype=object)
        array[:] = texts
        return array.reshape(2, 3)
    dtype = DATATYPES[datatype].dtype
    if dtype.kind == "f":
        info = np.finfo(dtype)
        floats = [0.5, -2.0, float(info.max), float(info.tiny), -0.0, 3.0]
        return np.array(floats, dtype=dtype).reshape(2, 3)
    bounds = np.iinfo(dtype)
    ints = [int(bounds.min), int(bounds.max), 0, 1, int(bounds.max) - 1, 7]
    return np.array(ints, dtype=dtype).reshape(2, 3)


@pytest.fixture
async def tensor_server(start_server: ServerFactory, tmp_path: Path) -> RunningServer:
    repository = tmp_path / "models"
    identity_model(repository)
    identity_model(repository, "identity-typed", TYPED)
    mixed_model(repository)
    text_model(repository)
    unbatched_model(repository)
    mixed_model(
        repository,
        "mixed-wait",
        'task = "tensor"\n[batching]\nmax_batch_size = 4\nmax_queue_delay_ms = 200\n',
    )
    mixed_model(
        repository,
        "mixed-declared",
        'task = "tensor"\n[batching]\nmax_batch_size = 4\n'
        '[[inputs]]\nname = "ids"\nshape = [5]\n[[outputs]]\nname = "total"\n',
    )
    return await start_server(model_repositories=[repository], default_models=False, rest_port=0)


@pytest.fixture
async def stub(tensor_server: RunningServer) -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tensor_server.port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
async def http(tensor_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rest_url(tensor_server), timeout=30) as client:
        yield client


def raw_request(model: str, arrays: dict[str, np.ndarray], **fields: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, **fields)
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else _datatype(array)
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        request.raw_input_contents.append(to_raw(array))
    return request


def _datatype(array: np.ndarray) -> str:
    from modelwire.datatypes import datatype_of

    return datatype_of(array).name


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """A response's raw outputs as arrays of their datatypes."""
    from modelwire.core.tensors import from_raw

    return {
        tensor.name: from_raw(DATATYPES[tensor.datatype], list(tensor.shape), raw, tensor.name)
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        # tritonclient gives text back from JSON as str, bytes from binary data.
        assert [e.encode() if isinstance(e, str) else e for e in got.ravel()] == list(want.ravel())
    else:
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


async def test_metadata_is_read_from_the_graph(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    mixed = await stub.ModelMetadata(pb.ModelMetadataRequest(name="mixed"))
    assert mixed.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in mixed.inputs] == [
        ("ids", "INT64", [-1, -1]),
        ("mask", "BOOL", [-1, -1]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in mixed.outputs] == [
        ("masked", "FP16", [-1, -1]),
        ("total", "FP32", [-1]),
    ]
    fixed = await stub.ModelMetadata(pb.ModelMetadataRequest(name="fixed"))
    assert [(t.name, t.datatype, list(t.shape)) for t in fixed.inputs] == [("x", "FP32", [2, 3])]
    words = await stub.ModelMetadata(pb.ModelMetadataRequest(name="words"))
    assert [(t.name, t.datatype) for t in words.inputs] == [("text", "BYTES")]
    assert [(t.name, t.datatype) for t in words.outputs] == [("ids", "INT64"), ("echo", "BYTES")]
    # model.toml fixed a dynamic axis and picked one output.
    declared = await stub.ModelMetadata(pb.ModelMetadataRequest(name="mixed-declared"))
    assert [list(t.shape) for t in declared.inputs] == [[-1, 5], [-1, -1]]
    assert [t.name for t in declared.outputs] == ["total"]


async def test_every_datatype_round_trips_raw_over_grpc(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    arrays = {f"in_{t}": sample(t) for t in ONNX_TYPES}
    response = await stub.ModelInfer(raw_request("identity", arrays, id="raw-1"))
    assert response.id == "raw-1"
    got = outputs_of(response)
    assert [t.datatype for t in response.outputs] == list(ONNX_TYPES)
    for datatype in ONNX_TYPES:
        assert_same(got[f"out_{datatype}"], arrays[f"in_{datatype}"])


async def test_every_datatype_round_trips_typed_over_grpc(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    request = pb.ModelInferRequest(model_name="identity-typed")
    for datatype in TYPED:
        array = sample(datatype)
        tensor = request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=[2, 3])
        getattr(tensor.contents, TYPED_CONTENTS[datatype]).extend(array.ravel().tolist())
    got = outputs_of(await stub.ModelInfer(request))
    for datatype in TYPED:
        assert_same(got[f"out_{datatype}"], sample(datatype))


async def test_every_datatype_round_trips_over_rest(http: httpx.AsyncClient) -> None:
    arrays = {f"in_{t}": sample(t) for t in ONNX_TYPES}
    inputs = []
    for name, array in arrays.items():
        datatype = name.removeprefix("in_")
        data = (
            [e.decode() for e in array.ravel()] if datatype == "BYTES" else array.ravel().tolist()
        )
        inputs.append({"name": name, "shape": [2, 3], "datatype": datatype, "data": data})
    # JSON both ways.
    answer = (await http.post("/v2/models/identity/infer", json={"inputs": inputs})).json()
    for output in answer["outputs"]:
        datatype = output["datatype"]
        want = arrays[output["name"].replace("out_", "in_")]
        if datatype == "BYTES":
            assert [e.encode() for e in output["data"]] == list(want.ravel())
        else:
            got = np.array(output["data"], dtype=DATATYPES[datatype].dtype).reshape(output["shape"])
            assert_same(got, want)
    # Binary both ways.
    header = {
        "inputs": [
            {"name": n, "shape": [2, 3], "datatype": n.removeprefix("in_"),
             "parameters": {"binary_data_size": len(to_raw(a))}}
            for n, a in arrays.items()
        ],
        "parameters": {"binary_data_output": True},
    }  # fmt: skip
    head = json.dumps(header).encode()
    body = head + b"".join(to_raw(a) for a in arrays.values())
    response = await http.post(
        "/v2/models/identity/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    described = json.loads(response.content[:length])
    offset = length
    from modelwire.core.tensors import from_raw

    for output in described["outputs"]:
        size = output["parameters"]["binary_data_size"]
        raw = response.content[offset : offset + size]
        offset += size
        got = from_raw(DATATYPES[output["datatype"]], output["shape"], raw, output["name"])
        assert_same(got, arrays[output["name"].replace("out_", "in_")])


@pytest.mark.parametrize(
    ("protocol", "mode"), [("grpc", "binary"), ("http", "binary"), ("http", "json")]
)
async def test_every_datatype_round_trips_through_tritonclient(
    tensor_server: RunningServer, tmp_path: Path, protocol: str, mode: str
) -> None:
    # tritonclient.http cannot put FP16 in JSON; every other type goes either way.
    types = [t for t in ONNX_TYPES if not (mode == "json" and t == "FP16")]
    model = "identity" if len(types) == len(ONNX_TYPES) else "identity-typed"
    arrays = {f"in_{t}": sample(t) for t in types}
    np.savez(tmp_path / "in.npz", **arrays)  # type: ignore[arg-type]
    target = (
        f"127.0.0.1:{tensor_server.port}"
        if protocol == "grpc"
        else rest_url(tensor_server).removeprefix("http://")
    )
    status, output = await processes.run_async(
        [
            sys.executable,
            str(HERE.parent / "tritonclient_tensors.py"),
            protocol,
            target,
            model,
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
            *(["json"] if mode == "json" else []),
        ],
        timeout=120,
    )
    assert status == 0, output.decode(errors="replace")
    got = dict(np.load(tmp_path / "out.npz", allow_pickle=True))
    for datatype in types:
        assert_same(got[f"out_{datatype}"], arrays[f"in_{datatype}"])


async def test_several_inputs_and_outputs_and_output_selection(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    ids = np.array([[1, 2, 3, 4], [10, 20, 30, 40]], np.int64)
    mask = np.array([[True, True, False, True], [False, True, True, False]])
    response = await stub.ModelInfer(raw_request("mixed", {"ids": ids, "mask": mask}))
    got = outputs_of(response)
    np.testing.assert_array_equal(got["masked"], (ids * mask).astype(np.float16))
    np.testing.assert_array_equal(got["total"], (ids * mask).sum(axis=1).astype(np.float32))
    only = await stub.ModelInfer(
        raw_request(
            "mixed",
            {"ids": ids, "mask": mask},
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="total")],
        )
    )
    assert [t.name for t in only.outputs] == ["total"]


async def test_text_goes_in_and_out_as_bytes(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    words = ["dog", "caf\u00e9", "cat", "unknown"]
    text = np.empty(4, dtype=object)
    text[:] = [w.encode() for w in words]
    got = outputs_of(await stub.ModelInfer(raw_request("words", {"text": text})))
    assert list(got["ids"]) == [VOCABULARY.get(w, 0) for w in words]
    assert list(got["echo"]) == list(text)
    bad = np.empty(1, dtype=object)
    bad[:] = [b"\xff\xfe"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(raw_request("words", {"text": bad}))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'text'" in (caught.value.details() or "")
    assert "UTF-8" in (caught.value.details() or "")


async def test_a_model_without_a_batch_axis_takes_its_shape_as_given(
    tensor_server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    answers = await asyncio.gather(
        *(stub.ModelInfer(raw_request("fixed", {"x": x + i})) for i in range(6))
    )
    for i, answer in enumerate(answers):
        got = outputs_of(answer)
        np.testing.assert_array_equal(got["doubled"], (x + i) * 2)
        np.testing.assert_array_equal(got["rowsum"], (x + i).sum(axis=1))
    batcher = tensor_server.engine.models.resolve("fixed").batcher
    assert batcher is not None
    assert set(batcher.stats.sizes) == {1}  # each request ran alone
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(raw_request("fixed", {"x": x[None]}))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'x': FP32 shape must be [2, 3], got [1, 2, 3]" in (caught.value.details() or "")


async def test_a_declared_shape_restricts_the_graph(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    def request(length: int) -> pb.ModelInferRequest:
        ids = np.ones((1, length), np.int64)
        return raw_request("mixed-declared", {"ids": ids, "mask": np.ones((1, length), bool)})

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(request(4))
    assert "input 'ids': INT64 shape must be [N, 5], got [1, 4]" in (caught.value.details() or "")
    assert list(outputs_of(await stub.ModelInfer(request(5)))["total"]) == [5.0]


async def test_requests_batch_only_with_requests_of_their_shape(
    tensor_server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    # mixed-wait waits up to 200 ms for 4 rows: four one-row requests of two lengths
    # make two batches of two, never one padded batch.
    def request(length: int, value: int) -> pb.ModelInferRequest:
        ids = np.full((1, length), value, np.int64)
        return raw_request("mixed-wait", {"ids": ids, "mask": np.ones((1, length), bool)})

    answers = await asyncio.gather(
        *(stub.ModelInfer(request(length, value)) for length, value in
          [(3, 1), (4, 2), (3, 3), (4, 4)])
    )  # fmt: skip
    assert [list(outputs_of(a)["total"]) for a in answers] == [[3.0], [8.0], [9.0], [16.0]]
    assert [list(outputs_of(a)["masked"].shape) for a in answers] == [[1, 3], [1, 4]] * 2
    batcher = tensor_server.engine.models.resolve("mixed-wait").batcher
    assert batcher is not None
    assert batcher.stats.sizes == {2: 2}
    # Rows of one request count: a request of 2 rows and two of 1 fill a batch of 4.
    rows = [np.full((n, 3), n, np.int64) for n in (2, 1, 1)]
    answers = await asyncio.gather(
        *(stub.ModelInfer(raw_request("mixed-wait", {"ids": r, "mask": r > 0})) for r in rows)
    )
    assert [list(outputs_of(a)["total"]) for a in answers] == [[6.0, 6.0], [3.0], [3.0]]
    assert batcher.stats.sizes == {2: 2, 3: 1}  # three requests, one batch


async def test_more_rows_than_a_batch_run_as_several_batches(
    tensor_server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    ids = np.arange(9 * 5, dtype=np.int64).reshape(9, 5)
    response = await stub.ModelInfer(
        raw_request("mixed-declared", {"ids": ids, "mask": np.ones((9, 5), bool)})
    )
    np.testing.assert_array_equal(outputs_of(response)["total"], ids.sum(axis=1))
    batcher = tensor_server.engine.models.resolve("mixed-declared").batcher
    assert batcher is not None
    assert max(batcher.stats.sizes) <= 4  # 9 rows in batches of at most 4


def _ids(shape: list[int], **fields: Any) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(
        name="ids", datatype="INT64", shape=shape, **fields
    )


def _mask(shape: list[int]) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(name="mask", datatype="BOOL", shape=shape)


def _bad(inputs: list[Any], raw: list[bytes] | None = None, **fields: Any) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name="mixed", inputs=inputs, raw_input_contents=raw or [], **fields
    )


EIGHT = np.zeros(2, np.int64).tobytes()
TWO_BOOLS = np.ones(2, bool).tobytes()


@pytest.mark.parametrize(
    ("request_", "details"),
    [
        (
            _bad([_ids([1, 2])], [EIGHT]),
            "missing input 'mask': the model's inputs are 'ids', 'mask'",
        ),
        (
            _bad([_ids([1, 2]), pb.ModelInferRequest.InferInputTensor(
                name="maks", datatype="BOOL", shape=[1, 2])], [EIGHT, TWO_BOOLS]),
            "unknown input 'maks': the model's inputs are 'ids', 'mask'",
        ),
        (
            _bad([pb.ModelInferRequest.InferInputTensor(name="ids", datatype="INT32", shape=[1, 2]),
                  _mask([1, 2])], [EIGHT, TWO_BOOLS]),
            "input 'ids': datatype 'INT32' is not accepted; the model takes INT64",
        ),
        (
            _bad([_ids([1, 2, 1]), _mask([1, 2])], [EIGHT, TWO_BOOLS]),
            "input 'ids': INT64 shape must be [N, -1] (-1: any length), got [1, 2, 1]",
        ),
        (
            _bad([_ids([1, 2]), _mask([1, 2])], [EIGHT[:-1], TWO_BOOLS]),
            "needs 16 bytes of INT64, got 15",
        ),
        (
            _bad([_ids([1, 2], contents=pb.InferTensorContents(int64_contents=[1, 2, 3])),
                  _mask([1, 2])]),
            "input 'ids': shape [1, 2] needs 2 INT64 values, got 3",
        ),
        (
            _bad([_ids([1, 2], contents=pb.InferTensorContents(int_contents=[1, 2])),
                  _mask([1, 2])]),
            "input 'ids': typed INT64 values travel in int64_contents; got int_contents",
        ),
        (
            _bad([_ids([1, 2], contents=pb.InferTensorContents(int64_contents=[1, 2])),
                  _mask([1, 2])], [EIGHT, TWO_BOOLS]),
            "both typed contents and raw_input_contents",
        ),
        (_bad([_ids([1, -2]), _mask([1, 2])], [EIGHT, TWO_BOOLS]), "negative dimension"),
        (_bad([_ids([2**40, 2**40]), _mask([1, 2])], [EIGHT, TWO_BOOLS]), "got 16"),
        (_bad([_ids([2**62, 2**62]), _mask([1, 2])], [EIGHT, TWO_BOOLS]), "got 16"),
        (_bad([_ids([0, 2]), _mask([0, 2])], [b"", b""]), "shape must be [N, -1]"),
        (
            _bad([_ids([1, 2]), _mask([2, 1])], [EIGHT, TWO_BOOLS]),
            "the inputs disagree on the batch size",
        ),
        (
            _bad([_ids([1, 2]), _mask([1, 2])], [EIGHT, TWO_BOOLS],
                 outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="sum")]),
            "unknown output 'sum': the model's outputs are masked, total",
        ),
        (
            _bad([_ids([1, 2]), _ids([1, 2])], [EIGHT, EIGHT]),
            "input 'ids' is given twice",
        ),
        (_bad([_ids([]), _mask([1, 2])], [EIGHT[:8], TWO_BOOLS]), "shape must be [N, -1]"),
        (
            _bad([_ids([1, 3]), _mask([1, 4])], [EIGHT + EIGHT[:8], np.ones(4, bool).tobytes()]),
            "could not run on this input (ONNX Runtime refused it)",
        ),
        (
            _bad([_ids([1] * 30 + [-1]), _mask([1, 2])], [EIGHT, TWO_BOOLS]),
            "(31 dimensions)] has a negative dimension",
        ),
        (
            _bad([pb.ModelInferRequest.InferInputTensor(name="x" * 5000, datatype="INT64",
                                                        shape=[1, 2]), _mask([1, 2])],
                 [EIGHT, TWO_BOOLS]),
            "unknown input 'xxxxxxxx",
        ),
    ],
    ids=[
        "missing-input", "unknown-input", "wrong-datatype", "wrong-rank", "raw-length",
        "typed-count", "typed-field", "typed-and-raw", "negative-dim", "exceeds-message",
        "overflows", "zero-rows", "rows-disagree", "unknown-output", "twice", "no-rows-axis",
        "shapes-the-graph-refuses", "many-dims", "long-name",
    ],
)  # fmt: skip
async def test_bad_tensor_requests_are_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub, request_: pb.ModelInferRequest, details: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details in (caught.value.details() or "")
    assert len(caught.value.details() or "") < 1000
    assert "onnxruntime_src" not in (caught.value.details() or "")


async def test_a_request_too_big_for_the_queue_is_refused_not_retried(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    ids = np.ones((4 * 1024 + 1, 5), np.int64)  # 1025 batches of 4 rows; the queue holds 1024
    request = raw_request("mixed-declared", {"ids": ids, "mask": ids > 0})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "makes 1025 batches" in (caught.value.details() or "")


async def test_bad_tensor_requests_over_rest(http: httpx.AsyncClient) -> None:
    def body(**change: Any) -> dict[str, Any]:
        ids = {"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}
        mask = {"name": "mask", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}
        ids.update(change)
        return {"inputs": [ids, mask]}

    cases = [
        (body(data=[1.5, 2]), "INT64 data must be numbers that fit it"),
        (body(data=[1, 2**70]), "INT64 data must be numbers that fit it"),
        (body(data=[1]), "needs 2 INT64 values, got 1"),
        (body(datatype="FP32", data=[1.0, 2.0]), "datatype 'FP32' is not accepted"),
        (body(datatype="FP8"), "datatype 'FP8' is not accepted"),
        (body(shape=[1, -1]), "negative dimension"),
        (body(shape=[2**62, 2**62]), "got 2"),
        (body(name="idz"), "unknown input 'idz'"),
        (body(datatype="FP32", data=[True, 2.5]), "datatype 'FP32' is not accepted"),
        (body(shape=[True, 2]), "shape"),
        (body(shape=[1, 2.0]), "shape"),
        (body(data=[True, 2]), "INT64 data must be numbers that fit it"),
    ]
    for request_body, message in cases:
        response = await http.post("/v2/models/mixed/infer", json=request_body)
        assert response.status_code == 400, (message, response.text)
        assert message in response.json()["error"], response.json()
    not_a_flag = {**body(), "parameters": {"binary_data_output": "false"}}
    response = await http.post("/v2/models/mixed/infer", json=not_a_flag)
    assert response.status_code == 400
    assert "binary_data_output parameter must be true or false" in response.json()["error"]
    ok = await http.post("/v2/models/mixed/infer", json=body())
    assert ok.status_code == 200, ok.text
    assert ok.json()["outputs"][1] == {"name": "total", "datatype": "FP32", "shape": [1],
                                       "data": [1.0]}  # fmt: skip
    text = await http.post(
        "/v2/models/words/infer",
        json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                          "data": ["cat", "caf\u00e9"]}]},
    )  # fmt: skip
    assert text.status_code == 200, text.text
    assert text.json()["outputs"][0]["data"] == [1, 3]
    assert text.json()["outputs"][1]["data"] == ["cat", "caf\u00e9"]


async def test_stream_infer_answers_tensor_requests_in_order(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    def request(value: int, tag: str) -> pb.ModelInferRequest:
        ids = np.full((1, 2), value, np.int64)
        return raw_request("mixed", {"ids": ids, "mask": np.ones((1, 2), bool)}, id=tag)

    bad = raw_request("mixed", {"ids": np.zeros((1, 2), np.int32), "mask": np.ones((1, 2), bool)})
    bad.id = "bad"

    async def requests() -> AsyncIterator[pb.ModelInferRequest]:
        for message in (request(1, "a"), bad, request(3, "c")):
            yield message

    answers = [answer async for answer in stub.ModelStreamInfer(requests())]
    assert [a.infer_response.id for a in answers] == ["a", "bad", "c"]
    assert "datatype 'INT32' is not accepted" in answers[1].error_message
    assert [list(outputs_of(answers[i].infer_response)["total"]) for i in (0, 2)] == [[2.0], [6.0]]


async def test_big_requests_raw_and_typed_give_the_same_answer(
    tensor_server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    # Past 256 KiB: raw contents are taken at once, typed ones are checked off the loop.
    ids = (np.arange(4 * 40_000, dtype=np.int64) % 1000).reshape(4, 40_000)
    mask = ids % 3 == 0
    raw = raw_request("mixed", {"ids": ids, "mask": mask})
    typed = pb.ModelInferRequest(model_name="mixed")
    typed.inputs.add(
        name="ids", datatype="INT64", shape=[4, 40_000]
    ).contents.int64_contents.extend(ids.ravel().tolist())
    typed.inputs.add(name="mask", datatype="BOOL", shape=[4, 40_000]).contents.bool_contents.extend(
        mask.ravel().tolist()
    )
    for request in (raw, typed):
        assert request.ByteSize() > 256 * 1024
        response = await stub.ModelInfer(request)
        np.testing.assert_array_equal(outputs_of(response)["total"], (ids * mask).sum(axis=1))
