"""Text embeddings end to end: MiniLM imported by `modelwire import sentence-transformers`,
served by `modelwire serve`, called over gRPC (Embed, EmbedStream, ModelInfer), REST
(:embed) and the OpenAI embeddings API with the `openai` client, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelwire.client import AsyncClient, Client, EmbeddingResult
from modelwire.errors import InvalidInput, NotFound
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.integration.cli.test_cli import modelwire
from tests.requirements import need_module
from tests.text_models import SENTENCES, reference_model, text_variant


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' own embeddings of SENTENCES."""
    vectors: np.ndarray = reference_model().encode(SENTENCES, batch_size=16)
    return vectors


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def test_served_embeddings_equal_sentence_transformers(
    text_serve: ServeProcess, reference: np.ndarray
) -> None:
    assert len(SENTENCES) >= 50
    with Client(text_serve.target) as client:
        # Batches of mixed lengths pad to their longest text, never to 256 tokens.
        together = client.embed(SENTENCES, model="minilm-cut")
        alone = [client.embed(text, model="minilm-cut").vectors[0] for text in SENTENCES[:8]]
    assert together.model == "minilm-cut"
    assert together.version == 1
    assert together.vectors.shape == (len(SENTENCES), 384)
    cosines = _cosines(together.vectors, reference)
    assert cosines.min() >= 0.999, [SENTENCES[i][:40] for i in np.where(cosines < 0.999)[0]]
    assert np.allclose(np.linalg.norm(together.vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(np.array(alone), together.vectors[:8]).min() >= 0.99999
    assert all(1 < t <= 256 for t in together.tokens)
    assert max(together.tokens) == 256  # the long paragraphs, cut as sentence-transformers does


def test_long_texts_are_refused_not_cut(text_serve: ServeProcess) -> None:
    long = " ".join(["word"] * 300)
    with Client(text_serve.target) as client, pytest.raises(InvalidInput) as refused:
        client.embed(["short", long], model="minilm")
    assert "text 1 is longer than the 256 tokens" in refused.value.message


def test_paraphrases_are_closer_than_unrelated_sentences(text_serve: ServeProcess) -> None:
    pairs = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(50, 60, 2)]
    with Client(text_serve.target) as client:
        vectors = client.embed([text for pair in pairs for text in pair], model="minilm").vectors
    first, second = vectors[0::2], vectors[1::2]
    similarity = first @ second.T  # unit vectors: cosines
    for index in range(len(pairs)):
        others = np.delete(similarity[index], index)
        assert similarity[index, index] > others.max() + 0.1, pairs[index]


def test_embed_stream_answers_in_order_and_fails_messages_alone(
    text_serve: ServeProcess,
) -> None:
    batches = [["first text"], ["second", "third"], [""], ["fourth \u00e9t\u00e9"]]
    with Client(text_serve.target) as client:
        outcomes = list(client.embed_stream(batches, model="minilm"))
        unary = client.embed(["second", "third"], model="minilm")
    assert [type(o) for o in outcomes] == [
        EmbeddingResult,
        EmbeddingResult,
        InvalidInput,
        EmbeddingResult,
    ]
    second = outcomes[1]
    assert isinstance(second, EmbeddingResult)
    assert np.allclose(second.vectors, unary.vectors, atol=1e-6)
    assert "text 0 is empty" in str(outcomes[2])


def test_bad_embed_requests_get_invalid_argument(text_serve: ServeProcess) -> None:
    with Client(text_serve.target) as client:
        cases: list[tuple[Any, str, type[Exception], str]] = [
            ([], "minilm", InvalidInput, "send at least one text"),
            (["  \n"], "minilm", InvalidInput, "text 0 is empty"),
            (["x" * 100_001], "minilm", InvalidInput, "100001 characters"),
            (["a digit?"], "digits", InvalidInput, "not a text-embedding model"),
            (["hello"], "nope", NotFound, "nope"),
        ]
        for texts, model, error, message in cases:
            with pytest.raises(error) as raised:
                client.embed(texts, model=model)
            assert message in str(raised.value), (texts[:1], model, raised.value)


def test_oip_takes_utf8_bytes_and_refuses_other_bytes(text_serve: ServeProcess) -> None:
    texts = np.array([b"hello world", "\u4f60\u597d".encode()], dtype=object)
    with Client(text_serve.target) as client:
        outputs = client.infer("minilm", {"text": texts})
        direct = client.embed(["hello world", "\u4f60\u597d"], model="minilm")
        assert client.input_datatypes("minilm") == {"text": "BYTES"}
        with pytest.raises(InvalidInput) as refused:
            client.infer("minilm", {"text": np.array([b"\xff\xfe"], dtype=object)})
    assert outputs["embedding"].dtype == np.float32
    assert np.allclose(outputs["embedding"], direct.vectors, atol=1e-6)
    assert outputs["tokens"].tolist() == list(direct.tokens)
    assert "text 0 is not UTF-8" in refused.value.message


def test_rest_embed(text_serve: ServeProcess) -> None:
    base = f"http://127.0.0.1:{text_serve.side_port('rest')}"
    with Client(text_serve.target) as client:
        expected = client.embed(["one text", "two"], model="minilm")
    answer = httpx.post(f"{base}/v1/models/minilm:embed", json={"texts": ["one text", "two"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"]) == ("minilm", 1)
    assert np.allclose(np.array(body["embeddings"]), expected.vectors, atol=1e-6)
    assert body["tokens"] == list(expected.tokens)
    assert body["total_tokens"] == expected.total_tokens
    versioned = httpx.post(f"{base}/v1/models/minilm/versions/1:embed", json={"texts": ["two"]})
    assert versioned.status_code == 200
    cases: list[tuple[dict[str, Any], str]] = [
        ({"texts": []}, "send at least one text"),
        ({}, "texts"),
    ]
    for payload, message in cases:
        refused = httpx.post(f"{base}/v1/models/minilm:embed", json=payload)
        assert refused.status_code == 400, refused.text
        assert message in refused.json()["error"]


def test_the_openai_client_works_unchanged(text_serve: ServeProcess, reference: np.ndarray) -> None:
    openai = need_module("openai", "the openai package (dev extra)")
    base = f"http://127.0.0.1:{text_serve.side_port('rest')}/v1"
    with openai.OpenAI(base_url=base, api_key="unused", max_retries=0) as client:
        # The client asks for base64 unless told otherwise; both forms are answered.
        default = client.embeddings.create(model="minilm-cut", input=SENTENCES[:5])
        floats = client.embeddings.create(
            model="minilm-cut", input=SENTENCES[0], encoding_format="float"
        )
        refusals = []
        for wrong in (
            {"input": [101, 7592, 102]},
            {"input": [[101, 102]]},
            {"input": "hello", "dimensions": 128},
            {"input": ""},
            {"input": " ".join(["word"] * 300)},
        ):
            with pytest.raises(openai.BadRequestError) as refused:
                client.embeddings.create(model="minilm", **wrong)
            refusals.append(refused.value)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nope", input="hello")
    assert [item.index for item in default.data] == list(range(5))
    vectors = np.array([item.embedding for item in default.data])
    assert _cosines(vectors, reference[:5]).min() >= 0.999
    assert np.allclose(floats.data[0].embedding, vectors[0], atol=1e-6)
    assert default.model == "minilm-cut"
    with Client(text_serve.target) as ours:
        tokens = ours.embed(SENTENCES[:5], model="minilm-cut").total_tokens
    assert default.usage.prompt_tokens == default.usage.total_tokens == tokens
    messages = [
        "token arrays are not accepted",
        "token arrays are not accepted",
        "dimensions 128",
        "text 0 is empty",
        "longer than the 256 tokens",
    ]
    for error, message in zip(refusals, messages, strict=True):
        assert error.status_code == 400
        assert message in error.message, (message, error.message)
        assert error.type == "invalid_request_error"


def test_cli_embed_prints_a_json_line_per_text(text_serve: ServeProcess) -> None:
    result = modelwire(
        "embed", "hello", "world peace", "--model", "minilm", "--target", text_serve.target
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["hello", "world peace"]
    assert all(len(line["embedding"]) == 384 for line in lines)
    refused = modelwire("embed", " ", "--model", "minilm", "--target", text_serve.target)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ")
    assert "text 0 is empty" in refused.stderr


async def test_the_asyncio_client_embeds_too(text_serve: ServeProcess) -> None:
    with Client(text_serve.target) as blocking:
        expected = blocking.embed(["alpha", "beta gamma"], model="minilm")
    async with AsyncClient(text_serve.target) as client:
        result = await client.embed(["alpha", "beta gamma"], model="minilm")
        streamed = [o async for o in client.embed_stream([["alpha"], []], model="minilm")]
    assert np.allclose(result.vectors, expected.vectors, atol=1e-6)
    assert result.tokens == expected.tokens
    first, refused = streamed
    assert isinstance(first, EmbeddingResult)
    assert np.allclose(first.vectors[0], expected.vectors[0], atol=1e-6)
    assert isinstance(refused, InvalidInput)
    assert "send at least one text" in refused.message


def test_a_version_with_a_foreign_tokenizer_is_failed_with_the_reason(
    text_repository: Path, tmp_path: Path
) -> None:
    foreign = text_variant(text_repository / "minilm", tmp_path, "", "foreign")
    (foreign / "tokenizer.json").unlink()
    (foreign / "tokenizer.json").write_bytes((Path(__file__).parent / "__init__.py").read_bytes())
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--model-repository", str(tmp_path))
    try:
        with Client(serve.target) as client:
            model = client.get_model("foreign")
            with pytest.raises(Exception, match="foreign"):
                client.embed("hello", model="foreign")
    finally:
        stop_serve(serve)
    (version,) = model.versions
    assert version.reason.startswith("foreign/1: tokenizer.json could not be read")
    assert "put the model's tokenizer.json" in version.reason
