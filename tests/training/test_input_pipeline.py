"""The train input pipeline on small gzip TFRecords: every row once per epoch, the order
fixed by the seed, the parsed cache giving the same rows with a fresh order each epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfpipe_jobs.training import input_pipeline
from tfpipe_operators.features import LABEL_KEY

ROWS = 3 * input_pipeline.PARSE_BLOCK + 123  # blocks of several sizes, a partial last one
SPEC = {
    "row_xf": tf.io.FixedLenFeature([], tf.int64),
    "price_xf": tf.io.FixedLenFeature([], tf.float32),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def _record(rows: list[int]) -> bytes:
    """One tf.Example packing `rows` (one value per row and feature, as the extract writes)."""
    features = {
        "row_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=rows)),
        "price_xf": tf.train.Feature(float_list=tf.train.FloatList(value=[r / 10 for r in rows])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[r % 2 for r in rows])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


# One row per record, and 50 rows per record (parse blocks of 81 records = 4050 rows, the
# last record of each file partial).
@pytest.fixture(scope="module", params=[1, 50], ids=["row-per-record", "packed-50"])
def packing(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(scope="module")
def part_files(tmp_path_factory: pytest.TempPathFactory, packing: int) -> list[str]:
    folder = tmp_path_factory.mktemp("train")
    paths = [str(folder / f"part-{i:05d}-of-00003.tfrecord.gz") for i in range(3)]
    for i, path in enumerate(paths):
        rows = list(range(i, ROWS, 3))
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for start in range(0, len(rows), packing):
                writer.write(_record(rows[start : start + packing]))
    return paths


def epoch(ds: tf.data.Dataset) -> tuple[np.ndarray, list[int]]:
    """Row ids in delivery order, and the size of each batch."""
    rows, sizes = [], []
    for features, label in ds:
        np.testing.assert_array_equal(label.numpy(), features["row_xf"].numpy() % 2)  # label stays with its row
        np.testing.assert_allclose(features["price_xf"].numpy(), features["row_xf"].numpy() / 10, rtol=1e-6)
        rows.append(features["row_xf"].numpy())
        sizes.append(int(label.shape[0]))
    return np.concatenate(rows), sizes


def train_ds(files: list[str], seed: int, cache_file: str | None = None, packing: int = 1) -> tf.data.Dataset:
    return input_pipeline.dataset(
        files,
        SPEC,
        batch_size=256,
        shuffle=True,
        seed=seed,
        shuffle_buffer=8192,
        cache_file=cache_file,
        rows_per_record=packing,
    )


def test_every_row_once_in_full_batches(part_files: list[str], packing: int) -> None:
    rows, sizes = epoch(train_ds(part_files, seed=7, packing=packing))
    assert sorted(rows.tolist()) == list(range(ROWS))
    assert all(size == 256 for size in sizes[:-1]) and sizes[-1] == ROWS % 256


def test_same_seed_same_order_other_seed_other_order(part_files: list[str]) -> None:
    first, _ = epoch(train_ds(part_files, seed=7))
    again, _ = epoch(train_ds(part_files, seed=7))
    other, _ = epoch(train_ds(part_files, seed=8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # Shuffled across files and windows, not only within a parse block.
    assert not np.array_equal(np.sort(first[:256]), np.sort(other[:256]))


def test_cached_epochs_same_rows_new_order_reproducible(part_files: list[str], tmp_path: Path) -> None:
    def two_epochs(cache: Path) -> list[np.ndarray]:
        cache.parent.mkdir()
        ds = train_ds(part_files, seed=7, cache_file=str(cache))
        return [epoch(ds)[0] for _ in range(2)]

    first, second = two_epochs(tmp_path / "a" / "train")
    assert sorted(second.tolist()) == list(range(ROWS))
    assert not np.array_equal(first, second)  # reshuffled after the cache
    replay = two_epochs(tmp_path / "b" / "train")
    np.testing.assert_array_equal(first, replay[0])
    np.testing.assert_array_equal(second, replay[1])


def test_unshuffled_keeps_file_order(part_files: list[str], packing: int) -> None:
    ds = input_pipeline.dataset(part_files[:1], SPEC, batch_size=1000, shuffle=False, seed=1, rows_per_record=packing)
    rows, _ = epoch(ds)
    np.testing.assert_array_equal(rows, np.arange(0, ROWS, 3))


def test_records_whose_features_differ_in_rows_fail(tmp_path: Path) -> None:
    path = str(tmp_path / "part-00000-of-00001.tfrecord.gz")
    features = {
        "row_xf": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2, 3])),
        "price_xf": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1, 0.2])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 0, 1])),
    }
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    ds = input_pipeline.dataset([path], SPEC, batch_size=4, shuffle=False, seed=1, rows_per_record=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"packed records: .*price_xf.* differ in rows"):
        list(ds)


def test_missing_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"no train TFRecords under .*"):
        input_pipeline.files(str(tmp_path), "train")


def test_epoch_variable_makes_each_epochs_order_independent_of_the_passes_before(
    part_files: list[str], tmp_path: Path
) -> None:
    """A run resumed at epoch 2 sees epochs 2 and 3 in the order an uninterrupted run does,
    although its dataset is fresh (its first pass reads the files and fills a new cache)."""

    def passes(first: int, last: int, cache: Path) -> dict[int, np.ndarray]:
        cache.parent.mkdir()
        epoch = tf.Variable(first, dtype=tf.int64)
        ds = input_pipeline.dataset(
            part_files, SPEC, 256, shuffle=True, seed=7, shuffle_buffer=8192, cache_file=str(cache), epoch=epoch
        )
        orders = {}
        for e in range(first, last + 1):
            epoch.assign(e)
            orders[e] = epoch_rows(ds)
        return orders

    uninterrupted = passes(0, 3, tmp_path / "a" / "train")
    resumed = passes(2, 3, tmp_path / "b" / "train")
    for e in (2, 3):
        np.testing.assert_array_equal(resumed[e], uninterrupted[e])
    assert sorted(resumed[3].tolist()) == list(range(ROWS))
    assert not np.array_equal(uninterrupted[2], uninterrupted[3])  # still a new order every epoch


def epoch_rows(ds: tf.data.Dataset) -> np.ndarray:
    return epoch(ds)[0]


def _damaged(path: str, tmp_path: Path, how: str) -> str:
    """A copy of a gzip shard cut in half, or with a run of bytes flipped in its middle."""
    data = bytearray(Path(path).read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
    target = tmp_path / "data" / "train" / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return str(target)


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_corrupt_shard_is_named_with_its_split_and_the_fix(part_files: list[str], tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    for path in part_files:
        (data_dir / "train").mkdir(parents=True, exist_ok=True)
        (data_dir / "train" / Path(path).name).write_bytes(Path(path).read_bytes())
    bad = _damaged(part_files[1], tmp_path, how)
    # What training sees: an error that names no file.
    with pytest.raises(tf.errors.DataLossError) as raw:
        list(train_ds(input_pipeline.files(str(data_dir), "train"), seed=7))
    assert "part-" not in str(raw.value)
    with pytest.raises(input_pipeline.CorruptShardError) as named:
        input_pipeline.check_shards(str(data_dir), ["train"], SPEC, "2026-11-21")
    message = str(named.value)
    assert message.startswith(f"{bad}: this shard of the train split is corrupt (DataLossError: ")
    assert "Rerun extract_transform for ds 2026-11-21" in message


def test_sound_shards_pass_the_check(part_files: list[str]) -> None:
    input_pipeline.check_shards(str(Path(part_files[0]).parent.parent), [Path(part_files[0]).parent.name], SPEC, "x")


def test_declared_rows_fix_the_number_of_batches(part_files: list[str]) -> None:
    ds = input_pipeline.dataset(part_files, SPEC, 256, shuffle=True, seed=7, rows=ROWS)
    assert int(ds.cardinality()) == -(-ROWS // 256)  # Keras runs exactly this many steps per epoch
    assert sum(1 for _ in ds) == -(-ROWS // 256)
    wrong = input_pipeline.dataset(part_files, SPEC, 256, shuffle=True, seed=7, rows=ROWS + 256)
    with pytest.raises(tf.errors.FailedPreconditionError, match="expected to contain"):
        list(wrong)
