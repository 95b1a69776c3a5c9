"""DatasetService against a live server: create, upload (with bad examples and
duplicates), describe, export, delete, and the errors."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest

from modelwire.api.v1 import datasets_pb2 as pb
from modelwire.api.v1 import datasets_pb2_grpc as pb_grpc
from modelwire.assembly import RunningServer
from modelwire.core.datasets import DatasetStore
from tests.conftest import ServerFactory
from tests.images import digit_bytes, png_header_claiming
from tests.waiting import wait_until


@pytest.fixture
async def stub(channel: grpc.aio.Channel) -> pb_grpc.DatasetServiceStub:
    return pb_grpc.DatasetServiceStub(channel)


async def messages(
    items: Iterable[tuple[str, bytes, str]], dataset: str = "digits-data"
) -> AsyncIterator[pb.UploadExamplesRequest]:
    for index, (label, image, client_id) in enumerate(items):
        yield pb.UploadExamplesRequest(
            dataset=dataset if index == 0 else "", label=label, image=image, client_id=client_id
        )


async def test_upload_describe_export_delete(
    start_server: ServerFactory, database_url: str | None
) -> None:
    server = await start_server(database_url=database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await upload_describe_export_delete(server, pb_grpc.DatasetServiceStub(channel))


async def test_an_unreachable_database_is_refused_at_start(start_server: ServerFactory) -> None:
    with pytest.raises(OSError, match="cannot use the database at --database-url"):
        await start_server(database_url="postgresql://nobody@127.0.0.1:1/none")


async def upload_describe_export_delete(
    server: RunningServer, stub: pb_grpc.DatasetServiceStub
) -> None:
    created = await stub.CreateDataset(pb.CreateDatasetRequest(name="digits-data", description="d"))
    assert created.dataset.name == "digits-data"
    assert created.dataset.examples == 0
    good = [(str(d), digit_bytes(d), f"{d}.png") for d in range(10)]
    items = [
        *good,
        ("3", digit_bytes(3), "again.png"),  # the same picture as 3.png: a duplicate
        ("7", b"not an image", "junk.bin"),
        ("bad\nlabel", digit_bytes(8, "JPEG"), "newline.jpg"),
        ("9", png_header_claiming(60_000, 60_000), "bomb.png"),
        ("1", digit_bytes(1, "JPEG"), "1.jpg"),
    ]
    summary = await stub.UploadExamples(messages(items))
    assert summary.accepted == 11
    assert summary.duplicates == 1
    rejected = {r.client_id: (r.index, r.reason) for r in summary.rejected}
    assert set(rejected) == {"junk.bin", "newline.jpg", "bomb.png"}
    assert rejected["junk.bin"] == (11, "data is not a JPEG, PNG, BMP, GIF or WebP image")
    assert "label" in rejected["newline.jpg"][1]
    assert "the limit is" in rejected["bomb.png"][1]

    described = (await stub.GetDataset(pb.GetDatasetRequest(name="digits-data"))).dataset
    assert described.examples == 11
    assert dict(described.label_counts) == {str(d): 2 if d == 1 else 1 for d in range(10)}
    assert described.total_bytes == sum(len(i) for _, i, _ in good) + len(digit_bytes(1, "JPEG"))
    assert described.update_time.ToNanoseconds() >= described.create_time.ToNanoseconds()

    exported = [
        e async for e in stub.ExportExamples(pb.ExportExamplesRequest(dataset="digits-data"))
    ]
    assert len(exported) == 11
    for example in exported:
        assert hashlib.sha256(example.image).hexdigest() == example.sha256
    assert {(e.label, e.image) for e in exported} >= {(label, image) for label, image, _ in good}

    # Uploading the same again stores nothing new.
    again = await stub.UploadExamples(messages(good))
    assert (again.accepted, again.duplicates) == (0, 10)

    listed = await stub.ListDatasets(pb.ListDatasetsRequest())
    assert [d.name for d in listed.datasets] == ["digits-data"]
    await stub.DeleteDataset(pb.DeleteDatasetRequest(name="digits-data"))
    assert not (await stub.ListDatasets(pb.ListDatasetsRequest())).datasets
    blobs = server.datasets.store.blobs
    assert not [p for p in blobs.rglob("*") if p.is_file()]  # their files went too


async def test_errors(stub: pb_grpc.DatasetServiceStub) -> None:
    await stub.CreateDataset(pb.CreateDatasetRequest(name="one"))
    cases = [
        (stub.CreateDataset(pb.CreateDatasetRequest(name="one")), grpc.StatusCode.ALREADY_EXISTS),
        (
            stub.CreateDataset(pb.CreateDatasetRequest(name="../up")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.CreateDataset(pb.CreateDatasetRequest(name="x" * 200)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (stub.GetDataset(pb.GetDatasetRequest(name="nope")), grpc.StatusCode.NOT_FOUND),
        (stub.DeleteDataset(pb.DeleteDatasetRequest(name="nope")), grpc.StatusCode.NOT_FOUND),
        (
            stub.UploadExamples(messages([("1", digit_bytes(1), "")], dataset="nope")),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            stub.UploadExamples(messages([("1", digit_bytes(1), "")], dataset="")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == code, raised.value.details()

    async def two_datasets() -> AsyncIterator[pb.UploadExamplesRequest]:
        yield pb.UploadExamplesRequest(dataset="one", label="1", image=digit_bytes(1))
        yield pb.UploadExamplesRequest(dataset="two", label="2", image=digit_bytes(2))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UploadExamples(two_datasets())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "one stream per dataset" in (raised.value.details() or "")
    # What came before the bad message is kept.
    assert (await stub.GetDataset(pb.GetDatasetRequest(name="one"))).dataset.examples == 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.ExportExamples(pb.ExportExamplesRequest(dataset="nope")):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bytes_per_stream_are_limited(start_server: ServerFactory) -> None:
    server = await start_server(max_upload_bytes=3000)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.DatasetServiceStub(channel)
        await stub.CreateDataset(pb.CreateDatasetRequest(name="capped"))
        items = [(str(d), digit_bytes(d), "") for d in range(5)]  # ~1.1 KB each
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.UploadExamples(messages(items, dataset="capped"))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 3,000 bytes" in (raised.value.details() or "")
        kept = await stub.GetDataset(pb.GetDatasetRequest(name="capped"))
        assert kept.dataset.examples == 2  # what fitted is kept


async def test_limits(start_server: ServerFactory) -> None:
    server = await start_server(max_upload_examples=3, max_example_bytes=2000)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.DatasetServiceStub(channel)
        await stub.CreateDataset(pb.CreateDatasetRequest(name="small"))
        big = digit_bytes(8, "BMP")
        assert len(big) > 2000
        items = [("1", digit_bytes(1), "a"), ("8", big, "big"), ("2", digit_bytes(2), "b")]
        summary = await stub.UploadExamples(messages(items, dataset="small"))
        assert summary.accepted == 2
        assert [r.client_id for r in summary.rejected] == ["big"]
        assert "the limit is 2,000" in summary.rejected[0].reason
        four = [(str(d), digit_bytes(d), "") for d in (3, 4, 5, 6)]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.UploadExamples(messages(four, dataset="small"))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 3" in (raised.value.details() or "")
        described = await stub.GetDataset(pb.GetDatasetRequest(name="small"))
        assert described.dataset.examples == 5  # 2, then the 3 before the limit


async def test_a_broken_stream_keeps_whole_examples_and_resumes(
    server: RunningServer, stub: pb_grpc.DatasetServiceStub
) -> None:
    await stub.CreateDataset(pb.CreateDatasetRequest(name="broken"))
    items = [(str(d), digit_bytes(d), f"{d}.png") for d in range(5)]
    call = stub.UploadExamples()
    processed = server.datasets.processed
    async for message in messages(items, dataset="broken"):
        await call.write(message)
    await wait_until(lambda: server.datasets.processed == processed + 5)
    call.cancel()  # the client goes away without closing the stream

    store = server.datasets.store
    kept = await wait_for_kept(server, "broken")
    assert kept == 5
    for example in await server.datasets.run(lambda: list(store.examples("broken"))):
        data = example.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == example.sha256
    assert await server.datasets.run(store.integrity_check) == "ok"
    # Resuming is sending everything again: what was kept comes back as duplicates.
    summary = await stub.UploadExamples(messages(items, dataset="broken"))
    assert summary.duplicates == kept
    assert summary.accepted == 5 - kept
    assert (await server.datasets.run(store.get, "broken")).examples == 5


async def wait_for_kept(server: RunningServer, dataset: str) -> int:
    """The examples kept once the server has finished with the broken stream."""
    await wait_until(lambda: server.datasets.uploads == 0)
    return (await server.datasets.run(server.datasets.store.get, dataset)).examples


async def keyed(
    items: Iterable[tuple[str, bytes, str]], key: str, dataset: str = "keyed"
) -> AsyncIterator[pb.UploadExamplesRequest]:
    async for message in messages(items, dataset=dataset):
        if message.dataset:
            message.idempotency_key = key
        yield message


async def test_a_retried_upload_with_its_key_answers_as_one_upload(
    start_server: ServerFactory, database_url: str | None
) -> None:
    server = await start_server(database_url=database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.DatasetServiceStub(channel)
        await stub.CreateDataset(pb.CreateDatasetRequest(name="keyed"))
        old = ("0", digit_bytes(0), "old.png")
        assert (await stub.UploadExamples(messages([old], dataset="keyed"))).accepted == 1
        items = [old, *[(str(d), digit_bytes(d), f"{d}.png") for d in range(1, 6)]]
        # The first attempt breaks after some examples were kept.
        call = stub.UploadExamples()
        processed = server.datasets.processed
        async for message in keyed(items[:4], "upload-1"):
            await call.write(message)
        await wait_until(lambda: server.datasets.processed == processed + 4)
        call.cancel()
        assert await wait_for_kept(server, "keyed") == 4
        # Sent again with its key, it answers as one unbroken upload would have: the
        # image stored before the key was first used is still a duplicate.
        again = await stub.UploadExamples(keyed(items, "upload-1"))
        assert (again.accepted, again.duplicates) == (5, 1)
        assert (await server.datasets.run(server.datasets.store.get, "keyed")).examples == 6
        # A third attempt answers the same; another key, or none, sees duplicates.
        third = await stub.UploadExamples(keyed(items, "upload-1"))
        assert (third.accepted, third.duplicates) == (5, 1)
        other = await stub.UploadExamples(keyed(items, "upload-2"))
        assert (other.accepted, other.duplicates) == (0, 6)
        # Within one keyed upload, the same image twice is a duplicate.
        twice = [("7", digit_bytes(7), "a.png"), ("7", digit_bytes(7), "b.png")]
        repeated = await stub.UploadExamples(keyed(twice, "upload-3"))
        assert (repeated.accepted, repeated.duplicates) == (1, 1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.UploadExamples(keyed(items, "k" * 129))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "idempotency_key" in (refused.value.details() or "")


async def test_uploads_cut_by_short_deadlines_never_wedge_the_store(
    start_server: ServerFactory, database_url: str | None
) -> None:
    """Uploads of three new images with deadlines from 1 to 20 ms end at every point of
    the upload path; each leaves the store whole and taking new writes, and a dataset
    created between them is durable (seen by another connection to the database)."""
    server = await start_server(database_url=database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.DatasetServiceStub(channel)
        await stub.CreateDataset(pb.CreateDatasetRequest(name="cut"))
        for milliseconds in range(1, 21):
            items = [
                (str(d), digit_bytes(d, "BMP", dark_on_light=milliseconds % 2 == 0), "")
                for d in (milliseconds % 10, (milliseconds + 3) % 10, (milliseconds + 6) % 10)
            ]
            await upload_with_deadline(stub, messages(items, dataset="cut"), milliseconds / 1000)
            await wait_until(lambda: server.datasets.uploads == 0)
            name = f"made-after-{milliseconds}"
            await stub.CreateDataset(pb.CreateDatasetRequest(name=name))
            summary = await stub.UploadExamples(messages(items[:1], dataset=name))
            assert summary.accepted == 1
        store = server.datasets.store
        other = DatasetStore(store.data_dir, database_url)
        try:
            names = {info.name for info in other.list()}
            assert {f"made-after-{ms}" for ms in range(1, 21)} <= names
            assert other.get("cut").examples <= 60
            assert other.integrity_check() == "ok"
        finally:
            other.close()


async def upload_with_deadline(
    stub: pb_grpc.DatasetServiceStub,
    requests: AsyncIterator[pb.UploadExamplesRequest],
    timeout: float,
) -> None:
    """An upload that may run out of time. grpc.aio's client sometimes ends a
    client-streaming call whose deadline passed with CancelledError rather than
    DEADLINE_EXCEEDED; that is the deadline too, unless this task itself is being
    cancelled."""
    try:
        await stub.UploadExamples(requests, timeout=timeout)
    except grpc.aio.AioRpcError:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
