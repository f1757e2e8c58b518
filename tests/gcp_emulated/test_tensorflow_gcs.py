"""TensorFlow's built-in GCS filesystem on fake-gcs-server, through the TLS relay.

TensorFlow ignores STORAGE_EMULATOR_HOST: each check below that passes went over
https_proxy to the relay and on to the stand-in. The objects are then read back with
google-cloud-storage, so a check cannot pass by writing somewhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.gcp_emulated

Client = Callable[..., dict[str, Any]]


def test_gfile_and_tfrecords_round_trip_on_gs(client_process: Client, gcp_standins: Any) -> None:
    result = client_process(
        """
        import tensorflow as tf
        from google.cloud import storage

        root = f"gs://{PARAMS['bucket']}/smoke/tf"
        gfile = tf.io.gfile
        with gfile.GFile(f"{root}/staging/hello.txt", "w") as f:
            f.write("written by tf.io.gfile")
        text = gfile.GFile(f"{root}/staging/hello.txt").read()
        gfile.rename(f"{root}/staging/hello.txt", f"{root}/final/hello.txt")
        # A folder, as tf.Transform publishes its output and steps publish theirs.
        for name in ("a.txt", "sub/b.txt"):
            with gfile.GFile(f"{root}/folder.tmp/{name}", "w") as f:
                f.write(name)
        gfile.rename(f"{root}/folder.tmp", f"{root}/folder", overwrite=True)

        records = [f"record-{i}".encode() for i in range(5)]
        for name, compression in (("plain.tfrecord", None), ("part-00000-of-00001.tfrecord.gz", "GZIP")):
            with tf.io.TFRecordWriter(f"{root}/data/{name}", options=compression) as writer:
                for record in records:
                    writer.write(record)
        read = {}
        for name, compression in (("plain.tfrecord", ""), ("part-00000-of-00001.tfrecord.gz", "GZIP")):
            dataset = tf.data.TFRecordDataset(f"{root}/data/{name}", compression_type=compression)
            read[name] = [r.decode() for r in dataset.as_numpy_iterator()]
        # Several MiB: more than one chunk of the resumable upload, and ranged reads back.
        big = bytes(range(256)) * (6 * 4096)
        with gfile.GFile(f"{root}/big.bin", "wb") as f:
            f.write(big)

        bucket = storage.Client().bucket(PARAMS["bucket"])
        print(json.dumps({
            "text": text,
            "exists_after_rename": [gfile.exists(f"{root}/staging/hello.txt"), gfile.exists(f"{root}/final/hello.txt")],
            "glob": sorted(gfile.glob(f"{root}/data/*.tfrecord*")),
            "folder": gfile.GFile(f"{root}/folder/sub/b.txt").read(),
            "read": read,
            "big_equal": gfile.GFile(f"{root}/big.bin", "rb").read() == big,
            "big_size": gfile.stat(f"{root}/big.bin").length,
            "on_emulator": sorted(b.name for b in bucket.list_blobs(prefix="smoke/tf/")),
            "gcs_text": bucket.blob("smoke/tf/final/hello.txt").download_as_text(),
        }))
        """,
        bucket=gcp_standins.gcs.bucket,
    )
    expected = [f"record-{i}" for i in range(5)]
    root = f"gs://{gcp_standins.gcs.bucket}/smoke/tf"
    assert result["text"] == "written by tf.io.gfile"
    assert result["exists_after_rename"] == [False, True]
    assert result["glob"] == [f"{root}/data/part-00000-of-00001.tfrecord.gz", f"{root}/data/plain.tfrecord"]
    assert result["folder"] == "sub/b.txt"
    assert result["read"] == {"plain.tfrecord": expected, "part-00000-of-00001.tfrecord.gz": expected}
    assert result["big_equal"] is True
    assert result["big_size"] == 6 * 4096 * 256
    # The listing, not gfile.exists: TensorFlow caches stat results for a few seconds.
    assert result["on_emulator"] == [
        "smoke/tf/big.bin",
        "smoke/tf/data/part-00000-of-00001.tfrecord.gz",
        "smoke/tf/data/plain.tfrecord",
        "smoke/tf/final/hello.txt",
        "smoke/tf/folder/a.txt",
        "smoke/tf/folder/sub/b.txt",
    ]
    assert result["gcs_text"] == "written by tf.io.gfile"


def test_saved_model_saves_to_and_loads_from_gs(client_process: Client, gcp_standins: Any) -> None:
    result = client_process(
        """
        import tensorflow as tf

        class Doubler(tf.Module):
            def __init__(self) -> None:
                self.factor = tf.Variable(2.0)

            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
            def __call__(self, x):
                return x * self.factor

        path = f"gs://{PARAMS['bucket']}/smoke/saved_model"
        tf.saved_model.save(Doubler(), path)
        loaded = tf.saved_model.load(path)
        print(json.dumps({
            "out": loaded(tf.constant([1.0, 3.0])).numpy().tolist(),
            "files": sorted(tf.io.gfile.listdir(path)),
        }))
        """,
        bucket=gcp_standins.gcs.bucket,
    )
    assert result["out"] == [2.0, 6.0]
    assert "saved_model.pb" in result["files"]
    assert "variables/" in result["files"]
