"""tf.data over the transformed TFRecords: read in parallel, parse in large blocks, shuffle, batch.

Records pack several rows each (`tfpipe_jobs.packed_examples`; the extract's
`rows_per_record`, saved in its stats.json), which divides the per-record costs of
reading and parsing by that number. `parse_example` has a fixed cost per call, so records
are parsed in blocks of about `PARSE_BLOCK` rows (measured on 2 cores: 105K examples/s
parsing batches of 256 one-row records, 880K/s in blocks of 4096) and the parsed columns
are cut into training batches with `rebatch`, which slices tensors instead of handling
records one by one. Shuffling works on parsed blocks too: the order of blocks is shuffled
in a bounded buffer, then the rows of each window of `shuffle_buffer` rows are permuted,
so memory stays bounded by the buffer and no per-record shuffle runs.

Where the first pass's CPU went with one row per record (2 cores, gzip level 1 files of 11
scalar features): about 1.7 us reading and decompressing (mostly TFRecord framing and one
dataset element per record; uncompressed files cost nearly as much), 1.0 us parsing, the
rest shuffling, caching and batching; packing cuts the first two. Every stage runs on
several threads, so a quiet machine uses all its cores; a busy one gives the pipeline its
share only.

With `cache_file`, the parsed blocks of the first pass are written to a local file and
later epochs read them from there instead of decompressing and parsing again (the file
holds one parsed epoch, so memory does not grow with the data; shuffling still runs on
every epoch, after the cache).

Each pass's shuffle is a function of the seed and a pass seed only: with `epoch` (a
variable the trainer sets to the epoch about to start) the pass seed is that epoch's
number, so epoch k sees the same order in a run resumed at k as in an uninterrupted run;
without it each pass draws a fresh one (reproducible by `seed`). The files' order is fixed
by the seed (with the cache, later passes read the first pass's order anyway).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfpipe_jobs import artifacts, packed_examples
from tfpipe_operators.features import LABEL_KEY

READ_BUFFER = 4 << 20
PARSE_BLOCK = 4096


class CorruptShardError(OSError):
    """A transformed TFRecord shard does not read or parse through: the extract must rewrite it."""


class RowCountMismatchError(OSError):
    """A split's TFRecords hold another number of rows than the extract's stats.json says."""


def files(data_dir: str, split: str) -> list[str]:
    found = artifacts.glob(artifacts.join(data_dir, split, "part-*"))
    if not found:
        raise artifacts.MissingArtifactError(f"no {split} TFRecords under {data_dir}/{split}")
    return found


def split_rows(data_dir: str, split: str) -> int | None:
    """The split's row count as the extract saved it in stats.json (None if it did not)."""
    stats = artifacts.read_json(artifacts.join(data_dir, "stats.json"))
    rows = stats.get("splits", {}).get(f"{split}_rows")
    return None if rows is None else int(rows)


def check_shards(data_dir: str, splits: list[str], feature_spec: dict[str, Any], ds: str) -> None:
    """Raise `CorruptShardError` naming the first shard of `splits` that fails to read or parse.

    For the error path only (it reads every shard once more): tf.data's errors name no file
    (a damaged gzip shard gives `DataLossError: inflate() failed`), so after one, each
    shard is read on its own to find which it was.
    """
    packed_spec = packed_examples.packed_feature_spec(feature_spec)
    for split in splits:
        for path in files(data_dir, split):
            records = tf.data.TFRecordDataset(path, compression_type="GZIP", buffer_size=READ_BUFFER)
            try:
                for block in records.batch(PARSE_BLOCK):
                    packed_examples.unpack(tf.io.parse_example(block, packed_spec))
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
                reason = (exc.message or type(exc).__name__).splitlines()[0]
                # The op's wrapper names in front of the reader's own message say nothing to a user.
                reason = reason.split("}} ", 1)[-1].split(" [Op:", 1)[0].strip()
                raise CorruptShardError(
                    f"{path}: this shard of the {split} split is corrupt ({type(exc).__name__}: {reason}). "
                    f"Rerun extract_transform for ds {ds} (clear that day's extract_transform task) to "
                    f"rewrite {data_dir}, then train again."
                ) from exc


def rows_per_record(data_dir: str) -> int:
    """How many rows the extract packed per record (older outputs without the key: one)."""
    stats = artifacts.read_json(artifacts.join(data_dir, "stats.json"))
    return int(stats.get(packed_examples.STATS_KEY, 1))


def _parsed_blocks(
    file_patterns: list[str], feature_spec: dict[str, Any], rows_per_record: int, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """Blocks of about `PARSE_BLOCK` parsed rows; several files are read and parsed in parallel."""
    packed_spec = packed_examples.packed_feature_spec(feature_spec)
    records_per_block = max(1, PARSE_BLOCK // rows_per_record)

    def read(files: Any) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(files, compression_type="GZIP", buffer_size=READ_BUFFER)
        return records.batch(records_per_block).map(
            lambda serialized: packed_examples.unpack(tf.io.parse_example(serialized, packed_spec)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    if len(file_patterns) == 1:
        return read(file_patterns)
    filenames = tf.data.Dataset.from_tensor_slices(file_patterns)
    if shuffle:
        # Fixed across passes: a pass's order must not depend on how many passes came before.
        filenames = filenames.shuffle(len(file_patterns), seed=seed, reshuffle_each_iteration=False)
    # Each file is decompressed and parsed by its own thread; threads hand over whole parsed
    # blocks (handing over single records between threads costs more than the parse).
    return filenames.interleave(
        read, cycle_length=min(len(file_patterns), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def _permute_rows(columns: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
    rows = tf.shape(next(iter(columns.values())))[0]
    order = tf.argsort(tf.random.stateless_uniform([rows], seed=seed))
    return {name: tf.gather(column, order) for name, column in columns.items()}


def _shuffled_pass(parsed: tf.data.Dataset, seed: int, pass_seed: tf.Tensor, window: int) -> tf.data.Dataset:
    """One pass in an order drawn from (seed, pass_seed) alone: blocks shuffled in a bounded
    buffer, then the rows of each window of `window` rows permuted."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(pass_seed, tf.int64)])
    block_seed = tf.random.stateless_uniform([], seed=key, minval=None, maxval=None, dtype=tf.int64)
    blocks = parsed.shuffle(max(2, window // PARSE_BLOCK), seed=block_seed, reshuffle_each_iteration=False)
    windows = tf.data.Dataset.zip(blocks.rebatch(window), tf.data.Dataset.range(2**62))
    return windows.map(
        lambda columns, index: _permute_rows(columns, tf.stack([block_seed, index])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def dataset(
    file_patterns: list[str],
    feature_spec: dict[str, Any],
    batch_size: int,
    shuffle: bool,
    seed: int,
    shuffle_buffer: int = 65_536,
    repeat: bool = False,
    cache_file: str | None = None,
    rows_per_record: int = 1,
    epoch: tf.Variable | None = None,
    rows: int | None = None,
) -> tf.data.Dataset:
    """(features dict, label) batches; the label is popped from the transformed features.

    `feature_spec` is tf.Transform's per-row spec; `rows_per_record` only sizes the parse
    blocks (records of any packing parse the same way). `epoch`, an int64 variable set to
    the epoch about to start before each pass begins, makes that number the pass's seed.
    `rows` (the split's row count, from the extract's stats) declares the number of
    batches: Keras then runs exactly that many steps in every epoch, where an epoch of
    unknown length ends on a step that finds no data yet still advances the optimizer's
    step counter (so the first epoch of every process counted one step more, and a resumed
    run's later epochs drifted from an uninterrupted run's). A pass that delivers another
    number of batches fails.
    """
    autotune = tf.data.AUTOTUNE
    parsed = _parsed_blocks(file_patterns, feature_spec, rows_per_record, shuffle, seed)
    if cache_file:
        parsed = parsed.cache(cache_file)
    if shuffle:
        window = max(shuffle_buffer, batch_size)
        if epoch is None:
            # A fresh pass seed per iteration, drawn from `seed`: reproducible, never repeated.
            pass_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        else:
            # Read when a pass starts (its iterator is made), not when the dataset is built.
            counter = epoch
            pass_seeds = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).map(lambda _: counter.read_value())
        cached = parsed
        parsed = pass_seeds.flat_map(lambda pass_seed: _shuffled_pass(cached, seed, pass_seed, window))
    if repeat:
        parsed = parsed.repeat()

    def split_label(columns: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        features = dict(columns)
        label = features.pop(LABEL_KEY)
        return features, label

    batches = parsed.rebatch(batch_size).map(split_label)
    if rows is not None and not repeat:
        batches = batches.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
    return batches.prefetch(autotune).with_options(_options())


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # The autotuner times every element of every stage (the reader hands over one element per
    # record) and on a busy machine sometimes settled on too little parallelism (a first epoch
    # at 0.6 cores). Measured in one run on 2 busy cores, off vs on: first epoch 259-320K vs
    # 153-260K examples/s (3.9-4.0 vs 4.0-4.5 us of CPU per record), cached epochs 1.5-2.0M vs
    # 1.1-1.5M. Without it, AUTOTUNE parallelism is the number of cores, which suits these
    # CPU-bound stages.
    options.autotune.enabled = False
    return options
