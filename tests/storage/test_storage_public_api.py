"""Every ``__all__`` of bai.storage lists exactly the public names its module defines."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "bai.storage.api",
    "bai.storage.api.convert",
    "bai.storage.api.servicer",
    "bai.storage.api.transfer",
    "bai.storage.backends",
    "bai.storage.backends.base",
    "bai.storage.backends.fs",
    "bai.storage.backends.fs_walk",
    "bai.storage.backends.objects",
    "bai.storage.backends.s3",
    "bai.storage.backends.azure",
    "bai.storage.backends.gcs",
    "bai.storage.config",
    "bai.storage.domain",
    "bai.storage.domain.service",
    "bai.storage.domain.tokens",
    "bai.storage.errors",
    "bai.storage.server",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, n) for n in exported), exported - set(dir(module))
    defined = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == name
    }
    assert defined <= exported, defined - exported
