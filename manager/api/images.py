"""ImageService servicer."""

from __future__ import annotations

import base64
import binascii
from typing import TypeAlias

import grpc
from bai.manager.api.convert import image_to_proto
from bai.manager.api.interceptor import principal
from bai.manager.domain.errors import InvalidSessionRequest
from bai.manager.domain.images import ImageCatalog
from bai.pb.manager.v1 import image_service_pb2 as pb
from bai.pb.manager.v1 import image_service_pb2_grpc as pb_grpc

__all__ = ["ImageServicer"]

Context: TypeAlias = grpc.aio.ServicerContext


def _after(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidSessionRequest("page_token is not one this server issued",
                                    reason="INVALID_PAGE_TOKEN") from exc


class ImageServicer(pb_grpc.ImageServiceServicer):
    def __init__(self, catalog: ImageCatalog) -> None:
        self._catalog = catalog

    async def ListImages(
        self, request: pb.ListImagesRequest, context: Context
    ) -> pb.ListImagesResponse:
        principal()  # authenticated by the interceptor; every role may list images
        after = _after(request.page_token)
        images = [i for i in await self._catalog.list_images() if i.ref > after]
        size = request.page_size if request.page_size > 0 else len(images)
        page, rest = images[:size], images[size:]
        token = base64.urlsafe_b64encode(page[-1].ref.encode()).decode() if rest else ""
        return pb.ListImagesResponse(images=[image_to_proto(i) for i in page],
                                     next_page_token=token.rstrip("="))
