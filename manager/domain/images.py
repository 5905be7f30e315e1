"""Image catalog: alias resolution and per-image minimum slots from the image labels."""

from __future__ import annotations

import time
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
    """Read side of the images table.

    ``resolve`` runs on every CreateSession and listing the images reads every agent's holdings
    (5,000 rows with 5,000 agents: this capped enqueueing at ~14 sessions/s). So a successful
    resolution is answered from a listing at most ``cache_ttl`` seconds old; a miss always
    re-reads, so an image an agent has just reported is never refused. A hit can be stale only
    if every agent dropped the image meanwhile, and then the scheduler says so.
    """

    def __init__(self, images: ImageRepository, *, cache_ttl: float = 5.0) -> None:
        self._images = images
        self._cache_ttl = cache_ttl
        self._cached: list[ImageRecord] = []
        self._cached_at = float("-inf")

    async def list_images(self) -> list[ImageRecord]:
        images = await self._images.list_images()
        self._cached, self._cached_at = images, time.monotonic()
        return images

    async def resolve(self, requested: str) -> ImageRecord | None:
        if time.monotonic() - self._cached_at < self._cache_ttl:
            found = resolve(requested, self._cached)
            if found is not None:
                return found
        return resolve(requested, await self.list_images())
