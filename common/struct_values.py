"""Values read out of a ``google.protobuf.Struct``, as people wrote them.

A Struct stores every number as a double, so ``{"window_seconds": 3600}`` comes back as
``3600.0``; options printed, compared or handed to plugins should read ``3600`` again.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["plain"]


def plain(value: Any) -> Any:
    """``value`` (a Struct's Python form) with integral doubles turned back into ints."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
