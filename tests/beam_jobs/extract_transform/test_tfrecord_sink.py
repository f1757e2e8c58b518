"""Batched TFRecord writing: files TensorFlow reads back, capped in rows per file."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import tensorflow as tf

from tfpipe_jobs.beam_jobs.extract_transform.tfrecord_sink import write_tfrecord_batches
from tfpipe_jobs.beam_jobs.runner import make_options, make_runner


def test_batches_become_gzipped_tfrecords_tensorflow_reads(tmp_path: Path) -> None:
    batches = [[f"row-{b}-{i}".encode() * (i % 7 + 1) for i in range(300)] for b in range(10)]
    pipeline = beam.Pipeline(runner=make_runner("DirectRunner"), options=make_options("DirectRunner", 1))
    elements = [(len(batch), batch) for batch in batches]
    _ = pipeline | beam.Create(elements, reshuffle=False) | write_tfrecord_batches(str(tmp_path / "part"), 1000)
    pipeline.run().wait_until_finish()
    files = sorted(str(p) for p in tmp_path.glob("part-*-of-*.tfrecord.gz"))
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == sorted(r for batch in batches for r in batch)
    # 3000 rows, a file closes once it holds 1000 or more (whole batches of 300): 1200 + 1200 + 600
    sizes = sorted(sum(1 for _ in tf.data.TFRecordDataset(f, compression_type="GZIP")) for f in files)
    assert sizes == [600, 1200, 1200]


def test_files_are_gzip_at_the_chosen_level(tmp_path: Path) -> None:
    batch = [b"the same example bytes, repeated so that compression matters" * 20] * 500
    sizes = {}
    for level in (1, 9):
        pipeline = beam.Pipeline(runner=make_runner("DirectRunner"), options=make_options("DirectRunner", 1))
        prefix = str(tmp_path / f"level{level}" / "part")
        _ = (
            pipeline
            | beam.Create([(len(batch), batch)], reshuffle=False)
            | write_tfrecord_batches(prefix, 1000, gzip_level=level)
        )
        pipeline.run().wait_until_finish()
        (path,) = (tmp_path / f"level{level}").glob("part-*.tfrecord.gz")
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # a gzip stream TensorFlow's GZIP reader opens
        assert [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")] == batch
        sizes[level] = path.stat().st_size
    assert sizes[9] <= sizes[1]


def test_files_are_capped_in_rows_not_records(tmp_path: Path) -> None:
    # 10 batches of 30 records packing 300 rows each: 3000 rows, files close at 1000 rows.
    batches = [(300, [f"{b}-{i}".encode() for i in range(30)]) for b in range(10)]
    pipeline = beam.Pipeline(runner=make_runner("DirectRunner"), options=make_options("DirectRunner", 1))
    _ = pipeline | beam.Create(batches, reshuffle=False) | write_tfrecord_batches(str(tmp_path / "part"), 1000)
    pipeline.run().wait_until_finish()
    files = sorted(str(p) for p in tmp_path.glob("part-*-of-*.tfrecord.gz"))
    sizes = sorted(sum(1 for _ in tf.data.TFRecordDataset(f, compression_type="GZIP")) for f in files)
    assert sizes == [60, 120, 120]
