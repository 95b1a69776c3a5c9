"""Bearer tokens and their roles, free of any transport.

A tokens file (TOML) holds, per token, a name, its roles and a salted SHA-256 of the
token; never the token itself. Tokens are 32 random bytes, so a fast salted hash is
enough (a slow password hash guards guessable secrets, which these are not) and lets
every call be checked without a cache of secrets. Comparison is constant-time.

    [[token]]
    name = "ci-bot"
    roles = ["infer"]
    salt = "5f1c..."
    sha256 = "9a0b..."
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from modelwire.errors import InvalidInput, PermissionDenied, Unauthenticated

__all__ = ["ROLES", "Principal", "TokenStore", "add_token"]

#: infer: classification, OIP inference and metadata; admin: model load, unload,
#: reload; train: datasets and training.
ROLES = ("infer", "admin", "train")


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]

    def require(self, role: str) -> None:
        if role not in self.roles:
            raise PermissionDenied(f"token {self.name!r} lacks the {role!r} role this call needs")


@dataclass(frozen=True)
class _Entry:
    name: str
    roles: frozenset[str]
    salt: bytes
    digest: bytes


def _digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode()).digest()


class TokenStore:
    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        """Read a tokens file; InvalidInput (naming the entry, never a secret) if bad."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInput(f"tokens file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InvalidInput(f"tokens file {path} is not valid TOML: {error}") from None
        entries = []
        for index, item in enumerate(raw.get("token", [])):
            try:
                roles = frozenset(item["roles"])
                entry = _Entry(
                    str(item["name"]),
                    roles,
                    bytes.fromhex(item["salt"]),
                    bytes.fromhex(item["sha256"]),
                )
            except (KeyError, TypeError, ValueError):
                raise InvalidInput(
                    f"tokens file {path}: entry {index + 1} needs name, roles, salt and sha256"
                ) from None
            if unknown := roles - set(ROLES):
                raise InvalidInput(
                    f"tokens file {path}: token {entry.name!r} has unknown roles "
                    f"{sorted(unknown)}; roles are {', '.join(ROLES)}"
                )
            entries.append(entry)
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `authorization: Bearer <token>` value, or Unauthenticated."""
        if not authorization:
            raise Unauthenticated("this server needs a token: send 'authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization value must be 'Bearer <token>'")
        token = token.strip()
        found = None
        for entry in self._entries:  # every entry, matched or not: no timing tells which
            if hmac.compare_digest(_digest(entry.salt, token), entry.digest):
                found = entry
        if found is None:
            raise Unauthenticated("the token is not valid here")
        return Principal(found.name, found.roles)


def add_token(path: Path, name: str, roles: list[str]) -> str:
    """Append a new random token with `roles` to the tokens file (created if missing)
    and return it: the only time it is ever shown."""
    if not roles or set(roles) - set(ROLES):
        raise InvalidInput(f"roles must be some of {', '.join(ROLES)}, got {roles}")
    raw = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    tokens = raw.setdefault("token", [])
    if any(item.get("name") == name for item in tokens):
        raise InvalidInput(f"a token named {name!r} exists already in {path}")
    token = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    tokens.append(
        {"name": name, "roles": roles, "salt": salt.hex(), "sha256": _digest(salt, token).hex()}
    )
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(tomli_w.dumps(raw))
    temporary.chmod(0o600)
    temporary.replace(path)
    return token
