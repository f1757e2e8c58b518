"""Data and model monitoring, computed in the warehouse: the schema, drift and skew.

- `schema`: the pipeline's schema of its raw features, inferred on the first extraction,
  kept and versioned under `<root>/<pipeline>/schema/`, checked every day;
- `drift`: each feature's distribution on the day vs the previous day (extract);
- `skew`: the scoring rows' feature distributions vs the training rows' (publish_scores);
- `distributions`: the summaries and distances all of them (and the prediction gate) use;
- `report_plot`: the picture of drift and skew per feature.
"""
