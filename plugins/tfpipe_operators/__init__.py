"""tfpipe: an Airflow provider for daily TensorFlow pipelines.

Importing this package imports neither Airflow nor TensorFlow: the spec and features
modules are shared with the jobs environment, which has no Airflow.
"""

__version__ = "0.1.0"
