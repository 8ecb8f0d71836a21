"""docs/recipes/django.md: one Client per process, from settings, made lazily under a lock."""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from django.core import checks
from django.test import override_settings

import aigen


def _recipe_errors() -> list[str]:
    return [message.id for message in checks.run_checks() if message.id == "images.E001"]


def test_the_system_check_reports_a_missing_key(django_recipe: ModuleType) -> None:
    with override_settings(AIGEN={}):  # no key given, none in the environment
        assert _recipe_errors() == ["images.E001"]


def test_the_system_check_passes_with_a_key(
    django_recipe: ModuleType, client_options: dict[str, Any]
) -> None:
    with override_settings(AIGEN=client_options):
        assert _recipe_errors() == []


def test_get_client_makes_one_client_however_many_threads_ask(
    django_recipe: ModuleType, client_options: dict[str, Any]
) -> None:
    with override_settings(AIGEN=client_options):
        django_recipe.close_client()
        start = threading.Barrier(8)
        made: list[aigen.Client] = []

        def first_request() -> None:
            start.wait()
            made.append(django_recipe.get_client())

        threads = [threading.Thread(target=first_request) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        [client] = {id(c): c for c in made}.values()
        assert len(made) == 8
        assert django_recipe.get_client() is client

        django_recipe.close_client()  # what atexit does at the end of the process
        assert client._http.is_closed
        assert django_recipe.get_client() is not client  # the next use makes another
        django_recipe.close_client()


def test_the_page_settings_are_used(django_recipe: ModuleType) -> None:
    from django.conf import settings

    assert settings.AIGEN["retry"] == aigen.RetryPolicy(deadline=25.0)
