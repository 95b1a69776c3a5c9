from __future__ import annotations

from pathlib import Path

import pytest

from modelwire.core.tokens import TokenStore, add_token
from modelwire.errors import InvalidInput, PermissionDenied, Unauthenticated


def test_tokens_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    reader = add_token(path, "reader", ["infer"])
    trainer = add_token(path, "trainer", ["infer", "train"])
    text = path.read_text()
    assert reader not in text
    assert trainer not in text
    assert path.stat().st_mode & 0o077 == 0  # only the owner may read it
    store = TokenStore.load(path)
    principal = store.authenticate(f"Bearer {trainer}")
    assert principal.name == "trainer"
    principal.require("train")
    with pytest.raises(PermissionDenied, match="'reader' lacks the 'admin' role"):
        store.authenticate(f"bearer {reader}").require("admin")


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer wrong-token"]
)
def test_bad_credentials(tmp_path: Path, authorization: str | None) -> None:
    path = tmp_path / "tokens.toml"
    token = add_token(path, "reader", ["infer"])
    with pytest.raises(Unauthenticated) as raised:
        TokenStore.load(path).authenticate(authorization)
    assert token not in raised.value.message


def test_bad_files_and_roles(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    with pytest.raises(InvalidInput, match="does not exist"):
        TokenStore.load(path)
    with pytest.raises(InvalidInput, match="roles must be"):
        add_token(path, "x", ["root"])
    add_token(path, "x", ["infer"])
    with pytest.raises(InvalidInput, match="exists already"):
        add_token(path, "x", ["infer"])
    path.write_text('[[token]]\nname = "y"\nroles = ["god"]\nsalt = "00"\nsha256 = "00"\n')
    with pytest.raises(InvalidInput, match="unknown roles"):
        TokenStore.load(path)
    path.write_text('[[token]]\nname = "y"\n')
    with pytest.raises(InvalidInput, match="entry 1 needs"):
        TokenStore.load(path)
