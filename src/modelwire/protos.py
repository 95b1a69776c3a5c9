"""Where the .proto files that define modelwire's API are, for generating stubs."""

from __future__ import annotations

from pathlib import Path

__all__ = ["proto_dir"]


def proto_dir() -> Path:
    """The folder holding modelwire/api/... .proto files: inside the installed wheel, or
    the repository's proto/ folder when running from a source checkout."""
    packaged = Path(__file__).resolve().parent / "protos"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "proto"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("the .proto files are missing from this modelwire installation")
