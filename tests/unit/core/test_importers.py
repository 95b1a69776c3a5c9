"""`import_sentence_transformers`: what it refuses, and that a failed import leaves
nothing behind. (The real import of MiniLM runs in the text fixtures, tests.text_models.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modelwire.core.importers import import_sentence_transformers
from modelwire.errors import InvalidInput
from tests.requirements import need_module
from tests.text_models import minilm_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of MiniLM's sentence-transformers folder, weights left out."""
    copy = tmp_path / "source"
    shutil.copytree(minilm_folder(), copy, ignore=shutil.ignore_patterns("*.safetensors"))
    return copy


def _modules(folder: Path, *extra: dict[str, str]) -> None:
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([*modules, *extra]))


def test_what_cannot_be_served_is_refused_saying_why(folder: Path, tmp_path: Path) -> None:
    repository = tmp_path / "models"
    with pytest.raises(InvalidInput, match=r"modules\.json is missing"):
        import_sentence_transformers(tmp_path, repository, "m")
    _modules(folder, {"type": "sentence_transformers.models.Dense", "path": "2_Dense"})
    with pytest.raises(InvalidInput, match="Dense' cannot be served yet"):
        import_sentence_transformers(folder, repository, "m")
    (folder / "modules.json").write_text(json.dumps([{"type": "x"}]))
    with pytest.raises(InvalidInput, match="the first module is 'x'"):
        import_sentence_transformers(folder, repository, "m")
    with pytest.raises(InvalidInput, match="model name"):
        import_sentence_transformers(folder, repository, "../up")


def test_max_pooling_and_a_missing_tokenizer_are_refused(folder: Path, tmp_path: Path) -> None:
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(
        json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True})
    )
    with pytest.raises(InvalidInput, match="pooling pooling_mode_max_tokens cannot be served"):
        import_sentence_transformers(folder, tmp_path / "models", "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InvalidInput, match=r"tokenizer\.json is missing"):
        import_sentence_transformers(folder, tmp_path / "models", "m")


def test_a_failed_export_leaves_nothing_and_an_existing_model_is_kept(
    folder: Path, tmp_path: Path
) -> None:
    need_module("transformers", "transformers (the train extra)")
    repository = tmp_path / "models"
    (folder / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(InvalidInput, match="the encoder could not be loaded"):
        import_sentence_transformers(folder, repository, "m")
    assert list(repository.iterdir()) == []
    (repository / "m").mkdir()
    with pytest.raises(InvalidInput, match="exists: choose another --name"):
        import_sentence_transformers(folder, repository, "m")
    assert list(repository.iterdir()) == [repository / "m"]


def test_the_wheel_model_imports_refuse_to_overwrite(tmp_path: Path) -> None:
    from modelwire.core.importers import import_pocketsphinx, import_rapidocr

    (tmp_path / "pocketsphinx-en-us").mkdir()
    with pytest.raises(InvalidInput, match="exists"):
        import_pocketsphinx(tmp_path)
    (tmp_path / "reader-rec").mkdir()  # one of the four folders is enough to refuse
    with pytest.raises(InvalidInput, match="reader-rec exists"):
        import_rapidocr(tmp_path, "reader")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pocketsphinx-en-us", "reader-rec"]
    with pytest.raises(InvalidInput, match="not allowed"):
        import_rapidocr(tmp_path, "../escape")
