"""Image catalog: alias resolution and per-image minimum slots from the image labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bai.manager.domain import slots
from bai.manager.domain.errors import InvalidSlots
from bai.manager.domain.model import ImageRecord, Slots
from bai.manager.domain.ports import ImageRepository

__all__ = [
    "ALIAS_LABEL",
    "MIN_LABEL_PREFIX",
    "ImageCatalog",
    "aliases_of",
    "min_resources",
    "resolve",
]

ALIAS_LABEL = "ai.bai.aliases"
MIN_LABEL_PREFIX = "ai.backend.resource.min."


def aliases_of(labels: Mapping[str, str]) -> tuple[str, ...]:
    """Aliases from the comma-separated ``ai.bai.aliases`` label, in label order."""
    raw = labels.get(ALIAS_LABEL, "")
    return tuple(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))


def min_resources(labels: Mapping[str, str]) -> Slots:
    """Minimum slots from ``ai.backend.resource.min.<slot>`` labels (bad values ignored)."""
    result: Slots = {}
    for key, value in labels.items():
        if key.startswith(MIN_LABEL_PREFIX):
            slot = key[len(MIN_LABEL_PREFIX):]
            try:
                result[slot] = slots.parse_amount(slot, value)
            except InvalidSlots:
                continue
    return result


def resolve(requested: str, images: Sequence[ImageRecord]) -> ImageRecord | None:
    """Exact ref, then an alias, then a ref whose ``repo:tag`` suffix matches; held images only.

    Ties go to the greatest ref so that the answer does not depend on listing order.
    """
    wanted = requested.strip()
    held = sorted((i for i in images if i.agent_ids), key=lambda i: i.ref, reverse=True)
    for match in (
        lambda i: i.ref == wanted,
        lambda i: wanted in i.aliases,
        lambda i: i.ref.endswith("/" + wanted),
    ):
        found = next((i for i in held if match(i)), None)
        if found is not None:
            return found
    return None


class ImageCatalog:
    """Read side of the images table."""

    def __init__(self, images: ImageRepository) -> None:
        self._images = images

    async def list_images(self) -> list[ImageRecord]:
        return await self._images.list_images()

    async def resolve(self, requested: str) -> ImageRecord | None:
        return resolve(requested, await self._images.list_images())
