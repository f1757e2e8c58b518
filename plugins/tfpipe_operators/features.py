"""The single source of feature names, kinds and the names derived from them.

`preprocessing_fn`, the model builder and the serving export all ask this module
what a feature is called before and after tf.Transform, and what raw type it has,
so the three can never drift apart. Pure Python: the Airflow side imports it too.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

LABEL_KEY = "__label"
"""Name of the label once transformed (whatever the warehouse column is called)."""

SPLIT_TRAIN = "train"
SPLIT_EVAL = "eval"


class FeatureKind(StrEnum):
    """How a raw column becomes model input."""

    NUMERIC = "numeric"  # z-score, missing values filled with the mean
    BUCKETIZED = "bucketized"  # quantile buckets -> embedding
    VOCABULARY = "vocabulary"  # top-k vocabulary with OOV buckets -> embedding
    HASHED = "hashed"  # hash buckets -> embedding
    CROSS = "cross"  # hash of several categorical features' values together -> embedding


# A cross combines these kinds: their raw strings, or the bucket id of a bucketized one.
CROSSABLE_KINDS = frozenset({FeatureKind.VOCABULARY, FeatureKind.HASHED, FeatureKind.BUCKETIZED})


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class Feature(BaseModel):
    """One model input, as declared in a pipeline spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kind: FeatureKind
    top_k: int | None = Field(default=None, gt=0, description="vocabulary: keep the k most frequent values")
    frequency_threshold: int = Field(default=1, ge=1, description="vocabulary: drop rarer values")
    oov_buckets: int = Field(default=1, ge=1, description="vocabulary: buckets for unseen values")
    buckets: int | None = Field(default=None, ge=2, description="bucketized / hashed / cross: number of buckets")
    crosses: list[str] | None = Field(default=None, description="cross: the features whose values are combined")
    embedding_dim: int | None = Field(default=None, gt=0, description="overrides train.embedding_dim")

    @model_validator(mode="after")
    def _kind_options(self) -> Feature:
        if self.kind in (FeatureKind.BUCKETIZED, FeatureKind.HASHED, FeatureKind.CROSS) and self.buckets is None:
            raise ValueError(f"feature '{self.name}' of kind {self.kind.value} needs 'buckets'")
        if self.kind is FeatureKind.CROSS:
            crossed = self.crosses or []
            if len(set(crossed)) < 2:
                raise ValueError(
                    f"feature '{self.name}' of kind cross needs 'crosses': at least two different features "
                    f"(got {crossed})"
                )
        elif self.crosses is not None:
            raise ValueError(f"feature '{self.name}': crosses only applies to kind cross")
        if self.kind is not FeatureKind.VOCABULARY and self.top_k is not None:
            raise ValueError(f"feature '{self.name}': top_k only applies to kind vocabulary")
        return self

    @property
    def is_raw(self) -> bool:
        """True when the feature is a warehouse column (a cross is computed from other features)."""
        return self.kind is not FeatureKind.CROSS

    @property
    def raw_type(self) -> str:
        """'float' or 'string': how the raw column is read and parsed from tf.Example."""
        return "float" if self.kind in (FeatureKind.NUMERIC, FeatureKind.BUCKETIZED) else "string"

    @property
    def transformed_name(self) -> str:
        return f"{self.name}_xf"

    @property
    def is_categorical(self) -> bool:
        """True when the transformed feature is an integer id that feeds an embedding."""
        return self.kind is not FeatureKind.NUMERIC

    @property
    def vocabulary_file(self) -> str:
        return f"vocab_{self.name}"

    @property
    def counts_file(self) -> str:
        """The vocabulary again, one `<count> <value>` line per value, most frequent first."""
        return f"vocab_{self.name}_counts"


def vocabulary_file_for_label() -> str:
    return "vocab___label"


# The serving signatures' output each task is judged and scored by: export_serving_model
# writes it, evaluate_gate and batch_score read it.
OUTPUT_KEYS = {"binary": "probability", "multiclass": "probabilities", "regression": "value"}
