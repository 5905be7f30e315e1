"""Maps each top-level component folder into the ``bai`` namespace (see pyproject.toml)."""

from pathlib import Path

from setuptools import setup

COMPONENTS = {
    "bai.common": "common",
    "bai.pb": "pb",
    "bai.manager": "manager",
    "bai.agent": "agent",
    "bai.gateway": "gateway",
    "bai.client": "clients/python",
    "bai.appproxy": "appproxy",
    "bai.storage": "storage",
    "bai.webserver": "webserver",
}


def _packages() -> list[str]:
    found = []
    for package, folder in COMPONENTS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            rel = init.parent.relative_to(folder).parts
            found.append(".".join((package, *rel)))
    return found


setup(packages=_packages(), package_dir=COMPONENTS)
