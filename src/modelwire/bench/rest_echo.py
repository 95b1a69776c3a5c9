"""The echo server's REST side: FastAPI answering every classify with a fixed JSON
answer, having read the whole body (`python -m modelwire.bench.echo --rest-port`).

FastAPI reads the endpoint's annotations at run time, so this module does not postpone
them (no `from __future__ import annotations`)."""

import json

from fastapi import FastAPI, Request, Response

ANSWER = json.dumps(
    {"model": "echo", "version": 1, "classes": [{"label": "7", "index": 7, "score": 0.99}]}
).encode()


def rest_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/models/{name}:classify")
    async def classify(name: str, request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    return app
