"""Packaging for tfpipe.

One distribution, two environments (see DESIGN.md): the base install is the Airflow
provider (`tfpipe_operators`); the `jobs` extra adds what the job commands need
(TensorFlow, tf.Transform, Beam). The job code lives in folders with plain names
(`beam_jobs/`, `training/`, `serving_export/`) but is installed under the
`tfpipe_jobs` package so nothing generic lands at the top of site-packages.
"""

from __future__ import annotations

from setuptools import setup

AIRFLOW = [
    "apache-airflow>=3.3,<3.4",
    "apache-airflow-providers-google",
    "apache-airflow-providers-cncf-kubernetes",
    "apache-airflow-providers-apache-beam",
    "duckdb",
]
JOBS = [
    "tensorflow>=2.21,<2.22",
    "tf-keras>=2.21,<2.22",
    "tensorflow-transform>=1.21,<1.22",
    "apache-beam[gcp]>=2.77,<2.78",
    "pandas",
    "duckdb",
    "matplotlib",
    "tensorboard",
    "tensorflow-serving-api",
]

setup(
    name="tfpipe",
    version="0.1.0",
    description="Airflow provider for daily TensorFlow pipelines: extract, train, export, gate, score.",
    python_requires=">=3.11,<3.12",
    packages=[
        "tfpipe_operators",
        "tfpipe_operators.hooks",
        "tfpipe_operators.operators",
        "tfpipe_operators.sensors",
        "tfpipe_operators.warehouse",
        "tfpipe_jobs",
        "tfpipe_jobs.beam_jobs",
        "tfpipe_jobs.beam_jobs.extract_transform",
        "tfpipe_jobs.beam_jobs.batch_score",
        "tfpipe_jobs.evaluate_gate",
        "tfpipe_jobs.publish_scores",
        "tfpipe_jobs.tools",
        "tfpipe_jobs.monitoring",
        "tfpipe_jobs.training",
        "tfpipe_jobs.serving_export",
    ],
    package_dir={
        "tfpipe_operators": "plugins/tfpipe_operators",
        "tfpipe_operators.hooks": "plugins/tfpipe_operators/hooks",
        "tfpipe_operators.operators": "plugins/tfpipe_operators/operators",
        "tfpipe_operators.sensors": "plugins/tfpipe_operators/sensors",
        "tfpipe_operators.warehouse": "plugins/tfpipe_operators/warehouse",
        "tfpipe_jobs": "tfpipe_jobs",
        "tfpipe_jobs.beam_jobs": "beam_jobs",
        "tfpipe_jobs.beam_jobs.extract_transform": "beam_jobs/extract_transform",
        "tfpipe_jobs.beam_jobs.batch_score": "beam_jobs/batch_score",
        "tfpipe_jobs.evaluate_gate": "tfpipe_jobs/evaluate_gate",
        "tfpipe_jobs.publish_scores": "tfpipe_jobs/publish_scores",
        "tfpipe_jobs.tools": "tfpipe_jobs/tools",
        "tfpipe_jobs.monitoring": "tfpipe_jobs/monitoring",
        "tfpipe_jobs.training": "training",
        "tfpipe_jobs.serving_export": "serving_export",
    },
    package_data={"tfpipe_jobs": ["py.typed"], "tfpipe_operators": ["py.typed"]},
    install_requires=["pydantic>=2", "pyyaml", "sqlglot"],
    extras_require={"airflow": AIRFLOW, "jobs": JOBS},
    entry_points={
        "apache_airflow_provider": [
            "provider_info=tfpipe_operators.provider_info:get_provider_info",
        ],
        "console_scripts": ["tfpipe-job=tfpipe_jobs.cli:main"],
    },
)
