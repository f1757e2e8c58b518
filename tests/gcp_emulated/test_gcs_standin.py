"""google-cloud-storage against fake-gcs-server, from a fresh jobs-env process with the client env."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.gcp_emulated

Client = Callable[..., dict[str, Any]]


def test_upload_download_and_a_stale_generation_is_refused(client_process: Client, gcp_standins: Any) -> None:
    result = client_process(
        """
        from google.api_core import exceptions
        from google.cloud import storage

        client = storage.Client()  # STORAGE_EMULATOR_HOST: anonymous, no credentials file
        bucket = client.bucket(PARAMS["bucket"])
        blob = bucket.blob("smoke/registry/blessed.json")
        blob.upload_from_string(b'{"v": 1}', if_generation_match=0)  # create only
        first = bucket.get_blob(blob.name).generation
        blob.upload_from_string(b'{"v": 2}', if_generation_match=first)  # compare-and-swap wins
        second = bucket.get_blob(blob.name).generation

        def refused(data: bytes, generation: int) -> int | None:
            try:
                bucket.blob(blob.name).upload_from_string(data, if_generation_match=generation)
            except exceptions.PreconditionFailed as exc:
                return exc.code
            return None

        stale = refused(b'{"v": "stale"}', first)
        exists = refused(b'{"v": "again"}', 0)
        print(json.dumps({
            "first": first, "second": second, "stale": stale, "exists": exists,
            "content": bucket.blob(blob.name).download_as_bytes().decode(),
            "listed": [b.name for b in client.list_blobs(PARAMS["bucket"], prefix="smoke/registry/")],
        }))
        """,
        bucket=gcp_standins.gcs.bucket,
    )
    assert result["second"] != result["first"]
    assert result["stale"] == 412, "an upload with a stale if_generation_match must be refused"
    assert result["exists"] == 412, "if_generation_match=0 must refuse to overwrite"
    assert result["content"] == '{"v": 2}', "a refused upload must leave the object as it was"
    assert result["listed"] == ["smoke/registry/blessed.json"]


def test_limit_delete_ignores_a_stale_generation(client_process: Client, gcp_standins: Any) -> None:
    """A LIMIT of the stand-in, not GCS's behaviour: real GCS refuses this delete with 412.

    fake-gcs-server honours if_generation_match on uploads only; a delete (or copy) with a
    stale generation goes through. Nothing that relies on a delete or copy precondition is
    proven by this tier. If this test starts failing, the stand-in has learnt the check.
    """
    result = client_process(
        """
        from google.cloud import storage

        bucket = storage.Client().bucket(PARAMS["bucket"])
        blob = bucket.blob("smoke/limit/delete.txt")
        blob.upload_from_string(b"one")
        first = bucket.get_blob(blob.name).generation
        blob.upload_from_string(b"two")
        bucket.blob(blob.name).delete(if_generation_match=first)
        print(json.dumps({"exists": bucket.blob(blob.name).exists()}))
        """,
        bucket=gcp_standins.gcs.bucket,
    )
    assert result["exists"] is False


def test_relay_refuses_hosts_other_than_storage(gcp_standins: Any) -> None:
    """The TLS relay tunnels to the stand-in only: nothing a test runs can reach a real service."""
    host, port = gcp_standins.relay.url.removeprefix("http://").split(":")
    answers = {}
    for target in ("bigquery.googleapis.com:443", "example.com:443", "storage.googleapis.com:443"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            answers[target] = sock.recv(200).split(b"\r\n", 1)[0].decode()
    assert answers == {
        "bigquery.googleapis.com:443": "HTTP/1.1 403 Forbidden",
        "example.com:443": "HTTP/1.1 403 Forbidden",
        "storage.googleapis.com:443": "HTTP/1.1 200 Connection established",
    }


def test_beam_filesystem_renames_and_deletes_in_batches(client_process: Client, gcp_standins: Any) -> None:
    """Beam's GCS filesystem renames (a sink's finalize) and deletes with batch calls: the front splits them."""
    result = client_process(
        """
        from apache_beam.io.filesystems import FileSystems
        from google.cloud import storage

        root = f"gs://{PARAMS['bucket']}/smoke/beam"
        sources = [f"{root}/tmp/part-{i}" for i in range(3)]
        for i, path in enumerate(sources):
            with FileSystems.create(path) as f:
                f.write(f"shard {i}".encode())
        targets = [p.replace("/tmp/", "/final/") for p in sources]
        FileSystems.rename(sources, targets)
        after_rename = sorted(b.name for b in storage.Client().list_blobs(PARAMS["bucket"], prefix="smoke/beam/"))
        contents = [FileSystems.open(p).read().decode() for p in targets]
        FileSystems.delete(targets[:2])
        after_delete = sorted(b.name for b in storage.Client().list_blobs(PARAMS["bucket"], prefix="smoke/beam/"))
        print(json.dumps({"after_rename": after_rename, "contents": contents, "after_delete": after_delete}))
        """,
        bucket=gcp_standins.gcs.bucket,
    )
    assert result["after_rename"] == [f"smoke/beam/final/part-{i}" for i in range(3)]
    assert result["contents"] == ["shard 0", "shard 1", "shard 2"]
    assert result["after_delete"] == ["smoke/beam/final/part-2"]
