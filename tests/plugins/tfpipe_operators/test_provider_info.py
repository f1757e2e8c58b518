"""The provider's metadata: what Airflow finds through the `apache_airflow_provider` entry point."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points, version

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.bases.operator import BaseOperator
from airflow.sdk.bases.sensor import BaseSensorOperator

import tfpipe_operators
from tfpipe_operators.provider_info import get_provider_info


def _resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_the_entry_point_resolves_to_this_packages_metadata() -> None:
    (point,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("tfpipe_operators.")]
    info = point.load()()
    assert info == get_provider_info()
    assert info["package-name"] == "tfpipe" and info["versions"] == [tfpipe_operators.__version__]
    assert version("tfpipe") == tfpipe_operators.__version__


def test_every_named_module_imports_and_holds_what_its_section_says() -> None:
    info = get_provider_info()
    wanted = {"operators": BaseOperator, "sensors": BaseSensorOperator, "hooks": BaseHook}
    for section, base in wanted.items():
        for entry in info[section]:
            for name in entry["python-modules"]:
                module = importlib.import_module(name)
                own = [
                    c
                    for _, c in inspect.getmembers(module, inspect.isclass)
                    if c.__module__ == name and issubclass(c, base)
                ]
                assert own, f"{section}: {name} defines no {base.__name__}"


def test_the_extra_links_are_the_real_link_classes_with_their_names() -> None:
    links = [_resolve(path) for path in get_provider_info()["extra-links"]]
    assert all(inspect.isclass(link) and issubclass(link, BaseOperatorLink) for link in links)
    assert sorted(link.name for link in links) == sorted({link.name for link in links})  # no two alike
    assert all(isinstance(link.name, str) and link.name for link in links)


def test_airflow_lists_the_provider_with_its_links_and_hooks() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.providers["tfpipe"].version == tfpipe_operators.__version__
    assert set(get_provider_info()["extra-links"]) <= set(manager.extra_links_class_names)
