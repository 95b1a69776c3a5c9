from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelwire.core.datasets import Datasets, DatasetStore, UploadItem, validate_label
from modelwire.errors import AlreadyExists, InvalidInput, NotFound
from tests.images import digit_bytes
from tests.waiting import wait_until


async def accept_all(data: bytes) -> None:
    if not data.startswith(b"\x89PNG"):
        raise InvalidInput("not a PNG")


def test_store_counts_dedupes_and_deletes(tmp_path: Path, database_url: str | None) -> None:
    store = DatasetStore(tmp_path, database_url)
    store.create("a", "first")
    store.create("b")
    with pytest.raises(AlreadyExists):
        store.create("a")
    store.begin()
    assert store.add("a", "1", b"one") is True
    assert store.add("a", "2", b"one") is False  # same bytes: stored once, first label kept
    assert store.add("a", "2", b"two") is True
    assert store.add("b", "1", b"one") is True  # other datasets share the file
    store.commit("a")
    info = store.get("a")
    assert (info.examples, info.total_bytes, info.label_counts) == (2, 6, {"1": 1, "2": 1})
    assert [e.label for e in store.examples("a")] == ["1", "2"]
    store.delete("a")
    with pytest.raises(NotFound):
        store.get("a")
    files = sorted(p.read_bytes() for p in store.blobs.rglob("*") if p.is_file())
    assert files == [b"one"]  # "two" was only a's
    assert store.integrity_check() == "ok"
    store.close()
    reopened = DatasetStore(tmp_path, database_url)
    assert [d.name for d in reopened.list()] == ["b"]
    reopened.close()


def test_uncommitted_examples_vanish_and_garbage_is_collected(
    tmp_path: Path, database_url: str | None
) -> None:
    store = DatasetStore(tmp_path, database_url)
    store.create("a")
    store.begin()
    store.add("a", "1", b"lost")
    store.close()  # a crash before the commit
    reopened = DatasetStore(tmp_path, database_url)
    assert reopened.get("a").examples == 0
    assert reopened.collect_garbage() == 1
    assert not [p for p in reopened.blobs.rglob("*") if p.is_file()]
    reopened.close()


def test_two_servers_share_one_store(tmp_path: Path, database_url: str | None) -> None:
    """Two stores on one database and one folder (two servers, or two workers): what
    one writes the other reads, and a sweep of unreferenced files by one waits for the
    other's upload in progress instead of deleting the files it has just written."""
    first, second = DatasetStore(tmp_path, database_url), DatasetStore(tmp_path, database_url)
    first.create("shared")
    assert [d.name for d in second.list()] == ["shared"]
    first.begin()
    assert first.add("shared", "1", b"in flight")
    swept: list[int] = []
    sweeper = threading.Thread(target=lambda: swept.append(second.collect_garbage()))
    sweeper.start()
    sweeper.join(timeout=1.0)
    assert sweeper.is_alive()  # waiting for the upload's transaction
    first.commit("shared")
    sweeper.join(timeout=30)
    assert swept == [0]
    (example,) = second.examples("shared")
    assert example.path.read_bytes() == b"in flight"
    with pytest.raises(AlreadyExists):
        second.create("shared")
    first.close()
    second.close()


@pytest.mark.parametrize("label", ["", " 1", "1 ", "a\nb", "tab\there", "x" * 129, "\u200b"])
def test_bad_labels(label: str) -> None:
    with pytest.raises(InvalidInput, match="label"):
        validate_label(label)


@pytest.mark.parametrize("label", ["7", "cat", "chat noir", "猫", "ünïcødé-label_1.0"])
def test_good_labels(label: str) -> None:
    assert validate_label(label) == label


async def test_upload_keeps_what_came_before_a_break(
    tmp_path: Path, database_url: str | None
) -> None:
    datasets = Datasets(tmp_path, database_url)
    await datasets.run(datasets.store.create, "d")

    async def broken() -> AsyncIterator[UploadItem]:
        for digit in range(3):
            yield UploadItem("d" if digit == 0 else "", str(digit), digit_bytes(digit))
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await datasets.upload(broken(), accept_all, max_examples=100, max_example_bytes=1 << 20)
    assert (await datasets.run(datasets.store.get, "d")).examples == 3
    await datasets.close()


async def test_upload_commits_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None
) -> None:
    monkeypatch.setattr(Datasets, "COMMIT_EVERY", 2)
    datasets = Datasets(tmp_path, database_url)
    await datasets.run(datasets.store.create, "d")
    seen: list[int] = []

    async def items() -> AsyncIterator[UploadItem]:
        for digit in range(5):
            yield UploadItem("d", str(digit), digit_bytes(digit))
            await asyncio.sleep(0)
            seen.append((await datasets.run(datasets.store.get, "d")).examples)

    summary = await datasets.upload(
        items(), accept_all, max_examples=100, max_example_bytes=1 << 20
    )
    assert summary.accepted == 5
    assert seen[1] == 2  # the first two were committed before the third arrived
    await datasets.close()


@pytest.mark.parametrize("where", ["between-messages", "in-a-store-call"])
async def test_an_upload_cancelled_at_any_point_leaves_the_store_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None, where: str
) -> None:
    """Cancel an upload after each of its messages, and while each of its calls on the
    data thread is under way: whatever instant it lands at, no transaction is left
    open, what was written is whole, and the next calls work (and are durable)."""
    monkeypatch.setattr(Datasets, "COMMIT_EVERY", 2)  # writes inside the stream too
    datasets = Datasets(tmp_path, database_url)
    store = datasets.store
    await datasets.run(store.create, "d")
    # 5 messages; 4 calls on the data thread (the dataset's check, two batches of 2,
    # the last batch of 1).
    for point in range(1, 5):
        assert await cancelled_upload(datasets, where, point)
        await wait_until(lambda: datasets.uploads == 0)
        # The store takes new writes, from this connection and as seen by another.
        await datasets.run(store.create, f"after-{point}")
        await datasets.run(store.add_batch, f"after-{point}", [("1", digit_bytes(1))])
        other = DatasetStore(tmp_path, database_url)
        assert other.get(f"after-{point}").examples == 1
        assert other.get("d").examples <= 5
        for example in other.examples("d"):
            assert hashlib.sha256(example.path.read_bytes()).hexdigest() == example.sha256
        assert other.integrity_check() == "ok"
        other.close()
    await datasets.close()


async def cancelled_upload(datasets: Datasets, where: str, point: int) -> bool:
    """An upload of 5 images, cancelled after `point` messages or during its `point`th
    call on the data thread; whether it ended cancelled."""
    real_run = datasets.run
    tasks: list[asyncio.Task[object]] = []
    calls = 0

    async def run(function: Any, *args: object) -> Any:
        nonlocal calls
        calls += 1
        pending = asyncio.ensure_future(real_run(function, *args))
        if where == "in-a-store-call" and calls == point:
            tasks[0].cancel()
        return await pending

    async def items() -> AsyncIterator[UploadItem]:
        for index, digit in enumerate(range(5)):
            if where == "between-messages" and index == point:
                tasks[0].cancel()
            yield UploadItem("d", str(digit), digit_bytes(digit, "BMP"))

    datasets.run = run  # type: ignore[method-assign]
    try:
        tasks.append(
            asyncio.ensure_future(
                datasets.upload(
                    items(), accept_all_bmp, max_examples=100, max_example_bytes=1 << 20
                )
            )
        )
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
    finally:
        datasets.run = real_run  # type: ignore[method-assign]
    return tasks[0].cancelled()


async def accept_all_bmp(data: bytes) -> None:
    if not data.startswith(b"BM"):
        raise InvalidInput("not a BMP")


async def test_a_text_dataset_takes_texts_dedupes_them_and_refuses_images(
    tmp_path: Path, database_url: str | None
) -> None:
    datasets = Datasets(tmp_path, database_url)
    info = await datasets.run(datasets.store.create, "t", "", "text")
    assert info.kind == "text"
    await datasets.run(datasets.store.create, "i")
    sent = [
        UploadItem("t", "greeting", b"", text="Hello there!\nHow are you?"),
        UploadItem("", "greeting", b"", text="Hello there!\nHow are you?"),  # duplicate
        UploadItem("", "greeting", digit_bytes(1)),
        UploadItem("", "greeting", b"", text="   \n"),
        UploadItem("", "greeting", b"", text="bell\x07"),
        UploadItem("", "greeting", b"", text="x" * 10_001),
        UploadItem("", "question", b"", text="猫はどこ\tWhere is the cat?"),
    ]

    async def items(messages: list[UploadItem]) -> AsyncIterator[UploadItem]:
        for message in messages:
            yield message

    summary = await datasets.upload(
        items(sent), accept_all, max_examples=100, max_example_bytes=1 << 20
    )
    assert (summary.accepted, summary.duplicates) == (2, 1)
    reasons = {r.index: r.reason for r in summary.rejected}
    assert reasons == {
        2: "this is a text dataset: send text, not an image",
        3: "the text is empty: send some text",
        4: "the text has the control character U+0007 at 4: send plain text (tabs and line "
        "breaks are fine)",
        5: "the text has 10,001 characters; the limit is 10,000",
    }
    stored = await datasets.run(lambda: list(datasets.store.examples("t")))
    assert [(e.label, e.path.read_text(encoding="utf-8")) for e in stored] == [
        ("greeting", "Hello there!\nHow are you?"),
        ("question", "猫はどこ\tWhere is the cat?"),
    ]
    text = b"Hello there!\nHow are you?"
    assert stored[0].sha256 == hashlib.sha256(text).hexdigest()
    image_summary = await datasets.upload(
        items([UploadItem("i", "1", b"", text="not a picture")]),
        accept_all,
        max_examples=100,
        max_example_bytes=1 << 20,
    )
    assert [r.reason for r in image_summary.rejected] == [
        "this is an image dataset: send an image, not text"
    ]
    with pytest.raises(InvalidInput, match="kind 'audio' is not one of image, text"):
        await datasets.run(datasets.store.create, "a", "", "audio")
    await datasets.close()


def test_a_store_made_before_dataset_kinds_opens_with_its_datasets_as_images(
    tmp_path: Path,
) -> None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp_path / "modelwire.db")) as old:
        old.execute(
            "CREATE TABLE datasets (name TEXT PRIMARY KEY, description TEXT NOT NULL, "
            "created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL)"
        )
        old.execute("INSERT INTO datasets VALUES ('old', '', 1.0, 1.0)")
        old.commit()
    store = DatasetStore(tmp_path)
    assert store.get("old").kind == "image"
    assert store.create("new", kind="text").kind == "text"
    store.close()
    reopened = DatasetStore(tmp_path)  # the column is added once
    assert [(d.name, d.kind) for d in reopened.list()] == [("new", "text"), ("old", "image")]
    reopened.close()
