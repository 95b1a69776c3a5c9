"""The model manager and engine over real repositories of real ONNX models."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from modelwire.core.inference import InferenceEngine
from modelwire.core.models import ModelState, VersionState
from modelwire.errors import InvalidInput, NotFound, NotReady
from tests.images import digit_bytes
from tests.models import add_model, add_version

EngineFactory = Callable[..., Awaitable[InferenceEngine]]


@pytest.fixture
async def engine_for(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    engines: list[InferenceEngine] = []

    async def start(*repositories: Path, default_model: str | None = None) -> InferenceEngine:
        engine = await InferenceEngine.start(
            list(repositories), threads=2, default_model=default_model
        )
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        await engine.close()


def broken_repository(root: Path) -> Path:
    repo = root / "repo"
    add_model(repo, "good")
    (add_model(repo, "bad-toml") / "model.toml").write_text("name = [")
    shutil.rmtree(add_model(repo, "no-onnx") / "1")
    (add_model(repo, "corrupt") / "1" / "model.onnx").write_bytes(b"not onnx at all")
    (add_model(repo, "labels") / "labels.txt").write_text("a\nb\n")
    bad_shape = add_model(repo, "shape")
    toml = bad_shape / "model.toml"
    toml.write_text(toml.read_text().replace("width = 8", "width = 10"))
    (repo / "not a model name!").mkdir()
    (repo / ".hidden").mkdir()
    return repo


async def test_broken_models_fail_alone(engine_for: EngineFactory, tmp_path: Path) -> None:
    engine = await engine_for(broken_repository(tmp_path))
    states = {s.name: s for s in engine.models.statuses()}
    assert set(states) == {"good", "bad-toml", "no-onnx", "corrupt", "labels", "shape"}
    assert states["good"].state == ModelState.READY
    expected = {
        "bad-toml": "not valid TOML",
        "no-onnx": "no version folder",
        "corrupt": "could not be loaded",
        "labels": "10 outputs but labels.txt has 2 labels",
        "shape": "ONNX input is [1, 8, 8] per image but model.toml says [1, 8, 10]",
    }
    for name, reason in expected.items():
        assert states[name].state == ModelState.FAILED, name
        assert reason in states[name].reason, (name, states[name].reason)
        assert str(tmp_path) not in states[name].reason
    result = await engine.classify(digit_bytes(4), "good")
    assert (result.model, result.version, result.top.label) == ("good", 1, "4")
    with pytest.raises(NotReady, match="'corrupt' is FAILED"):
        await engine.classify(digit_bytes(4), "corrupt")


@pytest.mark.parametrize(
    ("top", "tables", "served", "default"),
    [
        ("", "", [3], 3),
        ("", "[version_policy]\nlatest = 2\n", [2, 3], 3),
        ("", "[version_policy]\nall = true\n", [1, 2, 3], 3),
        ("", "[version_policy]\nspecific = [1, 3]\n", [1, 3], 3),
        ("default_version = 2", "[version_policy]\nall = true\n", [1, 2, 3], 2),
    ],
    ids=["latest-1", "latest-2", "all", "specific", "default-version"],
)
async def test_version_policy(
    engine_for: EngineFactory,
    tmp_path: Path,
    top: str,
    tables: str,
    served: list[int],
    default: int,
) -> None:
    add_model(tmp_path, "m", (1, 2, 3), top=top, tables=tables)
    engine = await engine_for(tmp_path)
    status = engine.models.status("m")
    assert [v.version for v in status.versions] == served
    assert (await engine.classify(digit_bytes(1), "m")).version == default
    for version in served:
        assert (await engine.classify(digit_bytes(1), "m", version)).version == version


async def test_unknown_names_and_versions(engine_for: EngineFactory, tmp_path: Path) -> None:
    add_model(tmp_path, "m", (1, 2))
    engine = await engine_for(tmp_path)
    with pytest.raises(NotFound, match="model 'nope' is not served here; models: m"):
        await engine.classify(digit_bytes(1), "nope")
    with pytest.raises(NotFound, match="model 'm' has no version 1; versions: 2"):
        await engine.classify(digit_bytes(1), "m", 1)
    for name in ("../m", "m/2", "..", "a" * 200, "m\x00"):
        with pytest.raises(InvalidInput, match="not allowed"):
            await engine.classify(digit_bytes(1), name)
    with pytest.raises(InvalidInput, match="top_k"):
        await engine.classify(digit_bytes(1), "m", top_k=0)


async def test_default_model_is_digits_then_the_setting(
    engine_for: EngineFactory, tmp_path: Path
) -> None:
    add_model(tmp_path / "repo", "alpha")
    add_model(tmp_path / "repo", "digits")
    engine = await engine_for(tmp_path / "repo")
    assert (await engine.classify(digit_bytes(2))).model == "digits"
    chosen = await engine_for(tmp_path / "repo", default_model="alpha")
    assert (await chosen.classify(digit_bytes(2))).model == "alpha"
    empty = await engine_for(tmp_path / "empty")
    with pytest.raises(NotFound, match="no model is served here"):
        await empty.classify(digit_bytes(2))


async def test_top_k_ranks_every_class(engine_for: EngineFactory, tmp_path: Path) -> None:
    add_model(tmp_path, "m")
    engine = await engine_for(tmp_path)
    result = await engine.classify(digit_bytes(6), "m", top_k=50)
    assert len(result.classes) == 10
    assert result.top.label == "6"
    scores = [c.score for c in result.classes]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert sorted(c.index for c in result.classes) == list(range(10))


async def test_unload_load_and_reload(engine_for: EngineFactory, tmp_path: Path) -> None:
    folder = add_model(tmp_path, "m", (1,))
    engine = await engine_for(tmp_path)
    status = await engine.models.unload("m")
    assert status.state == ModelState.UNAVAILABLE
    assert status.reason == "unloaded"
    with pytest.raises(NotReady, match="'m' is UNAVAILABLE: unloaded"):
        await engine.classify(digit_bytes(1), "m")
    assert (await engine.models.load("m")).state == ModelState.READY
    add_version(folder, 2)
    status = await engine.models.load("m")
    assert [(v.version, v.state) for v in status.versions] == [(2, VersionState.READY)]
    assert (await engine.classify(digit_bytes(1), "m")).version == 2
    with pytest.raises(NotFound):
        await engine.models.load("missing")


async def test_reload_under_load_fails_no_request(
    engine_for: EngineFactory, tmp_path: Path
) -> None:
    folder = add_model(tmp_path, "m", (1,), tables="[version_policy]\nall = true\n")
    engine = await engine_for(tmp_path)
    image = digit_bytes(3)
    stop = asyncio.Event()
    answered: list[int] = []

    async def caller() -> None:
        while not stop.is_set():
            result = await engine.classify(image, "m")  # any exception fails the test
            answered.append(result.version)

    callers = [asyncio.ensure_future(caller()) for _ in range(16)]
    for version in (2, 3):
        add_version(folder, version)
        await engine.models.load("m")
        await engine.models.load("m")  # a plain reload of the same files, too
    shutil.rmtree(folder / "1")
    await engine.models.load("m")
    stop.set()
    await asyncio.gather(*callers)
    assert answered
    assert set(answered) <= {1, 2, 3}
    assert [v.version for v in engine.models.status("m").versions] == [2, 3]


async def test_a_broken_reload_keeps_the_old_versions_serving(
    engine_for: EngineFactory, tmp_path: Path
) -> None:
    folder = add_model(tmp_path, "m")
    engine = await engine_for(tmp_path)
    (folder / "model.toml").write_text("broken = ")
    status = await engine.models.load("m")
    assert status.state == ModelState.READY
    assert "not valid TOML" in status.reason
    assert (await engine.classify(digit_bytes(5), "m")).top.label == "5"


async def test_a_reload_whose_versions_all_fail_keeps_the_old_ones(
    engine_for: EngineFactory, tmp_path: Path
) -> None:
    folder = add_model(tmp_path, "m", (1,))
    engine = await engine_for(tmp_path)
    (add_version(folder, 2) / "model.onnx").write_bytes(b"half a file")
    status = await engine.models.load("m")
    assert status.state == ModelState.READY
    assert status.reason.startswith("reload failed, the previous versions still serve: m/2")
    assert [(v.version, v.state) for v in status.versions] == [(1, VersionState.READY)]
    assert (await engine.classify(digit_bytes(5), "m")).version == 1
    (folder / "2" / "model.onnx").write_bytes((folder / "1" / "model.onnx").read_bytes())
    status = await engine.models.load("m")
    assert (status.reason, [v.version for v in status.versions]) == ("", [2])


async def test_polling_follows_the_repository(engine_for: EngineFactory, tmp_path: Path) -> None:
    engine = await engine_for(tmp_path)
    assert engine.models.names() == []
    folder = add_model(tmp_path, "m", (1,))
    await engine.models.poll_once()
    assert engine.models.status("m").state == ModelState.READY
    add_version(folder, 2)
    await engine.models.poll_once()
    assert [v.version for v in engine.models.status("m").versions] == [2]
    await engine.models.unload("m")
    add_version(folder, 3)
    await engine.models.poll_once()  # an unloaded model stays unloaded
    assert engine.models.status("m").state == ModelState.UNAVAILABLE
    shutil.rmtree(folder)
    await engine.models.poll_once()
    assert engine.models.names() == []


async def test_probabilities_output_is_used_as_it_is(
    engine_for: EngineFactory, tmp_path: Path
) -> None:
    add_model(tmp_path, "logits")
    folder = add_model(tmp_path, "raw")
    toml = folder / "model.toml"
    toml.write_text(toml.read_text().replace('kind = "logits"', 'kind = "probabilities"'))
    engine = await engine_for(tmp_path)
    softmaxed = await engine.classify(digit_bytes(7), "logits", top_k=10)
    raw = await engine.classify(digit_bytes(7), "raw", top_k=10)
    assert sum(c.score for c in softmaxed.classes) == pytest.approx(1.0, abs=1e-4)
    assert raw.top.label == softmaxed.top.label == "7"
    assert raw.top.score > 1.0  # the network's logit, not a probability
