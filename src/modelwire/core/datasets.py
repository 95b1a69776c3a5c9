"""The data store: named datasets of labelled images or labelled texts.

A dataset's kind (image or text) is fixed when it is made. Texts are stored as images
are, as UTF-8 files named by their SHA-256: deduplicated by content, durable alike.

Metadata lives in SQLite (WAL, synchronous=FULL) in the data directory, or in PostgreSQL
(see modelwire.core.database); image files are
content-addressed (`blobs/<first two hex digits>/<sha256>`), written to a temporary file,
fsynced and renamed into place, so a file either is whole or does not exist. A row that
refers to a file is committed only after the file (and its folder) are on disk: every
example a commit covers survives a crash, and a crash leaves at worst an unreferenced
file, which `collect_garbage` removes. One image is stored once per dataset, whatever
its label; datasets share files.

Every method is blocking and the store is not thread-safe: the caller runs them on one
thread (the servers use a single-thread executor).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import tempfile
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from modelwire.core.database import Database
from modelwire.core.repository import validate_name
from modelwire.errors import AlreadyExists, InvalidInput, NotFound

__all__ = [
    "KINDS",
    "MAX_TEXT_CHARS",
    "DatasetInfo",
    "DatasetStore",
    "Datasets",
    "Example",
    "Rejected",
    "UploadItem",
    "UploadKey",
    "UploadSummary",
    "validate_label",
    "validate_text",
]

T = TypeVar("T")

MAX_LABEL_CHARS = 128
MAX_TEXT_CHARS = 10_000
#: What a dataset holds.
KINDS = ("image", "text")
MAX_DESCRIPTION_CHARS = 4096
MAX_KEY_CHARS = 128
#: How long an upload's idempotency key is remembered.
KEY_LIFETIME_S = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS examples (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    label TEXT NOT NULL,
    size BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (dataset, sha256)
);
CREATE INDEX IF NOT EXISTS examples_by_sha256 ON examples(sha256);
CREATE TABLE IF NOT EXISTS upload_keys (
    key TEXT NOT NULL,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    attempt TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key, dataset, sha256)
);
"""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    created: float
    updated: float
    examples: int = 0
    total_bytes: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    kind: str = "image"


@dataclass(frozen=True)
class Example:
    label: str
    sha256: str
    path: Path


def validate_label(label: str) -> str:
    """A label is 1-128 characters of UTF-8 text without control characters or
    surrounding spaces (labels become lines of labels.txt)."""
    if (
        not label
        or len(label) > MAX_LABEL_CHARS
        or label != label.strip()
        or any(unicodedata.category(c).startswith("C") for c in label)
    ):
        raise InvalidInput(
            f"label {label[:64]!r} is not allowed: use 1-{MAX_LABEL_CHARS} characters without "
            "control characters or leading/trailing spaces",
            field="label",
        )
    return label


#: Whitespace a text may hold; every other control character is refused.
_TEXT_WHITESPACE = frozenset("\t\n\r")


def validate_text(text: str) -> str:
    """A text example is 1-MAX_TEXT_CHARS characters, not only whitespace, without
    control characters other than tabs and line breaks."""
    if not text.strip():
        raise InvalidInput("the text is empty: send some text", field="text")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(
            f"the text has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}",
            field="text",
        )
    for offset, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cs") and char not in _TEXT_WHITESPACE:
            raise InvalidInput(
                f"the text has the control character U+{ord(char):04X} at {offset}: send "
                "plain text (tabs and line breaks are fine)",
                field="text",
            )
    return text


class DatasetStore:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        """Image files under `data_dir`; metadata in `data_dir`/modelwire.db, or in the
        PostgreSQL database at `database_url`."""
        self.data_dir = data_dir
        self.blobs = data_dir / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self._db = self.open_database()
        self._db.create_schema(_SCHEMA)
        self._db.ensure_column("datasets", "kind", "TEXT NOT NULL DEFAULT 'image'")
        self._dirty_dirs: set[Path] = set()

    def open_database(self) -> Database:
        """A new connection to this store's database (for tables other modules own)."""
        return Database(self.data_dir / "modelwire.db", self.database_url)

    def close(self) -> None:
        self._db.close()

    # -- datasets --------------------------------------------------------------------

    def create(self, name: str, description: str = "", kind: str = "image") -> DatasetInfo:
        validate_name("dataset", name)
        if kind not in KINDS:
            raise InvalidInput(f"kind {kind[:32]!r} is not one of {', '.join(KINDS)}", field="kind")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(
                f"description is longer than {MAX_DESCRIPTION_CHARS} characters",
                field="description",
            )
        now = time.time()
        try:
            self._db.execute(
                "INSERT INTO datasets (name, description, created, updated, kind) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, description, now, now, kind),
            )
        except self._db.integrity_errors:
            raise AlreadyExists(f"dataset {name!r} exists already") from None
        return DatasetInfo(name, description, now, now, kind=kind)

    def list(self) -> list[DatasetInfo]:
        rows = self._db.execute("SELECT name FROM datasets ORDER BY name").fetchall()
        names = [row[0] for row in rows]
        return [self.get(name) for name in names]

    def get(self, name: str) -> DatasetInfo:
        validate_name("dataset", name)
        row = self._db.execute(
            "SELECT description, created, updated, kind FROM datasets WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"dataset {name!r} does not exist")
        counts = dict(
            self._db.execute(
                "SELECT label, COUNT(*) FROM examples WHERE dataset = ? GROUP BY label "
                "ORDER BY label",
                (name,),
            ).fetchall()
        )
        (total,) = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM examples WHERE dataset = ?", (name,)
        ).fetchone()
        return DatasetInfo(
            name, row[0], row[1], row[2], sum(counts.values()), int(total), counts, row[3]
        )

    def delete(self, name: str) -> None:
        self.get(name)
        self._db.execute("DELETE FROM datasets WHERE name = ?", (name,))
        self.collect_garbage()

    # -- examples --------------------------------------------------------------------

    def begin(self) -> None:
        """Start a batch of `add` calls that `commit` makes durable at once."""
        self._db.begin_write()

    def add(self, dataset: str, label: str, data: bytes, key: UploadKey | None = None) -> bool:
        """Add one (already validated) image inside a batch; False if the dataset holds
        this image already, unless an earlier attempt of the same keyed upload stored it
        (then it counts as this upload's)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            self._write_blob(path, data)
        now = time.time()
        cursor = self._db.execute(
            "INSERT INTO examples (dataset, sha256, label, size, created) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (dataset, digest, label, len(data), now),
        )
        if key is None:
            return cursor.rowcount == 1
        if cursor.rowcount == 1:
            self._db.execute(
                "INSERT INTO upload_keys (key, dataset, sha256, attempt, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key.key, dataset, digest, key.attempt, now),
            )
            return True
        row = self._db.execute(
            "SELECT attempt FROM upload_keys WHERE key = ? AND dataset = ? AND sha256 = ?",
            (key.key, dataset, digest),
        ).fetchone()
        return row is not None and row[0] != key.attempt

    def commit(self, dataset: str) -> None:
        """Make the batch durable: the new files' folders first, then the rows."""
        for folder in self._dirty_dirs:
            _fsync_dir(folder)
        self._dirty_dirs.clear()
        self._db.execute("UPDATE datasets SET updated = ? WHERE name = ?", (time.time(), dataset))
        self._db.commit()

    def rollback(self) -> None:
        self._db.rollback()
        self._dirty_dirs.clear()

    def add_batch(
        self, dataset: str, examples: Sequence[tuple[str, bytes]], key: UploadKey | None = None
    ) -> tuple[bool, ...]:
        """Add (label, image) pairs in one transaction that this call begins and ends:
        committed whole, or rolled back whole if anything fails. One flag per example,
        as `add` answers it."""
        try:
            self.begin()
            added = tuple(self.add(dataset, label, data, key) for label, data in examples)
            self.commit(dataset)
        except BaseException:
            self.rollback()
            raise
        return added

    def examples(self, dataset: str) -> Iterator[Example]:
        """Every example of a dataset, oldest first."""
        self.get(dataset)
        rows = self._db.execute(
            "SELECT label, sha256 FROM examples WHERE dataset = ? ORDER BY created, sha256",
            (dataset,),
        ).fetchall()
        for label, digest in rows:
            yield Example(label, digest, self.blob_path(digest))

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest

    def collect_garbage(self) -> int:
        """Remove image files no dataset refers to (left by deletes or crashes).

        Holds the write lock alone throughout: another process's upload writes its
        files only inside its own write transaction, so none is half-way through here."""
        self._db.begin_write(exclusive=True)
        try:
            self._db.execute(
                "DELETE FROM upload_keys WHERE created < ?", (time.time() - KEY_LIFETIME_S,)
            )
            rows = self._db.execute("SELECT DISTINCT sha256 FROM examples").fetchall()
            used = {row[0] for row in rows}
            removed = 0
            for folder in self.blobs.iterdir():
                for path in folder.iterdir():
                    if path.name not in used:
                        path.unlink(missing_ok=True)
                        removed += 1
        finally:
            self._db.commit()
        return removed

    def integrity_check(self) -> str:
        return self._db.integrity_check()

    def _write_blob(self, path: Path, data: bytes) -> None:
        if not path.parent.is_dir():
            path.parent.mkdir()
            self._dirty_dirs.add(self.blobs)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._dirty_dirs.add(path.parent)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class UploadItem:
    dataset: str
    label: str
    image: bytes
    client_id: str = ""
    idempotency_key: str = ""
    text: str = ""

    @property
    def data(self) -> bytes:
        """What is stored: the image, or the text as UTF-8."""
        return self.text.encode() if self.text else self.image


@dataclass(frozen=True)
class UploadKey:
    """An upload's idempotency key, and which attempt (stream) of it this is."""

    key: str
    attempt: str


def validate_key(key: str) -> str:
    if len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise InvalidInput(
            f"idempotency_key must be up to {MAX_KEY_CHARS} printable characters",
            field="idempotency_key",
        )
    return key


@dataclass(frozen=True)
class Rejected:
    client_id: str
    index: int
    reason: str


@dataclass
class UploadSummary:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class Datasets:
    """The store behind its own thread, for asyncio callers."""

    #: Accepted examples are written in one transaction per batch: after this many,
    #: this many bytes, or this many seconds since the last batch.
    COMMIT_EVERY = 256
    COMMIT_BYTES = 16 << 20
    COMMIT_AFTER_S = 0.5

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="modelwire-data")
        self.store = DatasetStore(data_dir, database_url)
        self.store.collect_garbage()
        #: Uploads under way, and the examples all uploads have processed so far
        #: (rejected, or accepted and to be written with their batch).
        self.uploads = 0
        self.processed = 0

    async def run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(function, *args))

    async def upload(
        self,
        items: AsyncIterator[UploadItem],
        check_image: Callable[[bytes], Awaitable[object]],
        *,
        max_examples: int,
        max_example_bytes: int,
        max_stream_bytes: int | None = None,
    ) -> UploadSummary:
        """Store a stream of examples. Bad examples are rejected with their reason and
        the stream goes on; accepted ones are written in batches, the last when the
        stream ends or breaks, so whatever was received whole is kept.

        No transaction stays open across an await: each batch is begun, written and
        committed (or rolled back) inside one call on the data thread, so a caller
        cancelled at any instant leaves no transaction behind."""
        summary = UploadSummary()
        dataset = ""
        key: UploadKey | None = None
        batch: list[tuple[str, bytes]] = []
        batch_bytes = 0
        last_commit = time.monotonic()
        index = -1
        received = 0
        kind = "image"

        last_write: asyncio.Future[tuple[bool, ...]] | None = None

        async def write() -> None:
            nonlocal batch, batch_bytes, last_commit, last_write
            # Taken before the await, and the write shielded: if this caller is
            # cancelled meanwhile, the batch is still written, once.
            pending, batch, batch_bytes = batch, [], 0
            last_commit = time.monotonic()
            last_write = asyncio.ensure_future(
                self.run(self.store.add_batch, dataset, pending, key)
            )
            added = await asyncio.shield(last_write)
            summary.accepted += sum(added)
            summary.duplicates += len(added) - sum(added)

        self.uploads += 1
        try:
            async for item in items:
                index += 1
                received += len(item.image) + len(item.text)
                if max_stream_bytes is not None and received > max_stream_bytes:
                    raise InvalidInput(
                        f"a stream may carry at most {max_stream_bytes:,} bytes of images; "
                        f"the first {index:,} examples were processed: upload the rest in "
                        "another stream",
                        field="image",
                    )
                if index == 0:
                    if not item.dataset:
                        raise InvalidInput(
                            "the first message must name the dataset", field="dataset"
                        )
                    kind = (await self.run(self.store.get, item.dataset)).kind
                    dataset = item.dataset
                    if item.idempotency_key:
                        key = UploadKey(validate_key(item.idempotency_key), uuid.uuid4().hex)
                elif item.dataset and item.dataset != dataset:
                    raise InvalidInput(
                        f"message {index} names dataset {item.dataset!r}, but this stream "
                        f"uploads to {dataset!r}: use one stream per dataset",
                        field="dataset",
                    )
                if index >= max_examples:
                    raise InvalidInput(
                        f"a stream may carry at most {max_examples:,} examples; the first "
                        f"{max_examples:,} were processed: upload the rest in another stream",
                        field="image",
                    )
                reason = await self._problem(item, kind, check_image, max_example_bytes)
                if reason:
                    summary.rejected.append(Rejected(item.client_id, index, reason))
                    self.processed += 1
                    continue
                data = item.data
                batch.append((item.label, data))
                batch_bytes += len(data)
                self.processed += 1
                if (
                    len(batch) >= self.COMMIT_EVERY
                    or batch_bytes >= self.COMMIT_BYTES
                    or time.monotonic() - last_commit > self.COMMIT_AFTER_S
                ):
                    await write()
        finally:
            try:
                if batch:
                    # A client that leaves cancels this task, but what it sent whole is
                    # kept.
                    await write()
            finally:
                # Counted as under way until its last write is on disk.
                if last_write is None or last_write.done():
                    self.uploads -= 1
                else:
                    last_write.add_done_callback(self._upload_done)
        return summary

    def _upload_done(self, _: object) -> None:
        self.uploads -= 1

    @staticmethod
    async def _problem(
        item: UploadItem,
        kind: str,
        check_image: Callable[[bytes], Awaitable[object]],
        max_bytes: int,
    ) -> str:
        try:
            validate_label(item.label)
            if kind == "text":
                if item.image:
                    raise InvalidInput("this is a text dataset: send text, not an image")
                validate_text(item.text)
                return ""
            if item.text:
                raise InvalidInput("this is an image dataset: send an image, not text")
            if len(item.image) > max_bytes:
                raise InvalidInput(
                    f"image is {len(item.image):,} bytes; the limit is {max_bytes:,}"
                )
            await check_image(item.image)
        except InvalidInput as error:
            return error.message
        return ""

    async def close(self) -> None:
        await self.run(self.store.close)
        self._thread.shutdown(wait=True)
