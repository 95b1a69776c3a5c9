"""A bare grpc.aio server that answers at once with a fixed result: the transport
ceiling of Python gRPC on this machine, for benchmarks to compare with. It answers
InferenceService's Classify and ClassifyStream, and the Open Inference Protocol's
ModelInfer (with the digits model's answer: FP32 logits [1, 10]) and ModelMetadata (any
model: one FP32 input named "input"), so `modelwire bench --mode oip` can load it too.
With --rest-port it also answers REST classify (`POST /v1/models/NAME:classify`) with a
fixed JSON answer from FastAPI on uvicorn, the stack of the REST gateway: the transport
ceiling of REST in the same run. It runs on the event loop `modelwire serve` would take
(--event-loop, default auto), so the two are compared on the same loop.

    python -m modelwire.bench.echo --port 0     # prints "echo listening on 127.0.0.1:PORT"
    python -m modelwire.bench.echo --port 0 --rest-port 0   # "echo REST on ..." first
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelwire.api.oip import grpc_predict_v2_pb2 as oip
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc

ANSWER = pb.ClassifyResponse(
    model="echo", version=1, classes=[pb.ClassScore(label="7", index=7, score=0.99)]
)


INFER_ANSWER = oip.ModelInferResponse(
    model_name="digits",
    model_version="1",
    outputs=[
        oip.ModelInferResponse.InferOutputTensor(name="logits", datatype="FP32", shape=[1, 10])
    ],
    raw_output_contents=[bytes(40)],
)


class EchoInferServicer(oip_grpc.GRPCInferenceServiceServicer):
    async def ModelMetadata(
        self, request: oip.ModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> oip.ModelMetadataResponse:
        tensor = oip.ModelMetadataResponse.TensorMetadata
        return oip.ModelMetadataResponse(
            name=request.name,
            versions=["1"],
            platform="echo",
            inputs=[tensor(name="input", datatype="FP32", shape=[-1])],
            outputs=[tensor(name="logits", datatype="FP32", shape=[-1, 10])],
        )

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> oip.ModelInferResponse:
        return INFER_ANSWER


class EchoServicer(pb_grpc.InferenceServiceServicer):
    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClassifyResponse:
        return ANSWER

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[pb.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        async for message in request_iterator:
            yield pb.ClassifyStreamResponse(id=message.id, response=ANSWER)


async def main(port: int, rest_port: int | None = None) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_InferenceServiceServicer_to_server(EchoServicer(), server)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(EchoInferServicer(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    if rest_port is not None:
        from modelwire.bench.rest_echo import rest_app
        from modelwire.rest.server import RestServer

        # Held until the end: the loop keeps only a weak reference to the server's task.
        _rest = await RestServer.start(rest_app(), ["127.0.0.1"], rest_port, grace_period_s=0)
        print(f"echo REST on {_rest.addresses[0]}", flush=True)
    print(f"echo listening on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    from typing import get_args

    from modelwire.assembly import loop_factory
    from modelwire.settings import Settings

    loops = get_args(Settings.model_fields["event_loop"].annotation)

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rest-port", type=int, default=None)
    parser.add_argument("--event-loop", choices=loops, default="auto")
    args = parser.parse_args()
    factory = loop_factory(Settings(event_loop=args.event_loop))
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args.port, args.rest_port))
