"""The floor under `modelwire serve` on a small device: the parts the edge install cannot
do without, and nothing of modelwire's own code.

It imports what serving the default model needs (numpy, ONNX Runtime, grpcio with its
health and reflection services, Pillow, pydantic), opens the default model's ONNX file
in an ONNX Runtime session and runs it once, then serves gRPC health (SERVING) and
reflection on 127.0.0.1 until it is stopped. `benchmarks/edge.py` runs it in an
environment that holds only those packages, at the versions of the bare install, and
measures it as it measures `modelwire serve`: the difference is what modelwire itself
costs.

    python benchmarks/edge_floor.py MODEL.onnx   # prints "serving model(s) on 127.0.0.1:PORT"
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import PIL.Image  # noqa: F401  (imported for its share of memory, as the server does)
import pydantic  # noqa: F401
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


async def serve(model: Path) -> None:
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in model_input.shape]
    session.run(None, {model_input.name: np.zeros(shape, np.float32)})

    server = grpc.aio.server()
    checks = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    names = (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"serving model(s) on 127.0.0.1:{port}", flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
