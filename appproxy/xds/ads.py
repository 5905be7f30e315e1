"""An xDS v3 control plane: State-of-the-World over one aggregated gRPC stream (ADS).

Protocol (Envoy's, summarized for this server):
- Envoy speaks first, with one DiscoveryRequest per type URL it wants (CDS, LDS, then RDS with
  the route configuration names its listeners refer to). The first request of a type on a stream
  carries no nonce and is always answered, with the current resources, even when Envoy already
  has their version (e.g. after a coordinator restart).
- Every response carries a fresh nonce. Envoy answers each with a request echoing that nonce:
  an ACK (``version_info`` = the version it applied) or a NACK (``error_detail`` set, the version
  it keeps). A request whose nonce is not the latest sent for its type is stale and ignored.
- CDS and LDS are wildcard: a response holds every resource and absence means removal. RDS is
  by name: a response holds the subscribed route configurations we have; when the subscribed
  names change, the same version is resent with the new set.
- Whenever the resources change, every open stream gets the types whose version changed, in
  the order clusters, listeners, routes, so nothing refers to a cluster Envoy does not know.
  A NACKed version is not resent; the next change is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import grpc
from bai.appproxy.xds.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    TYPE_ORDER,
    Resources,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

__all__ = ["AdsServer", "AdsStream", "SnapshotCache"]

log = logging.getLogger(__name__)

_WILDCARD_TYPES = frozenset({CLUSTER_TYPE, LISTENER_TYPE})
_SHORT = {CLUSTER_TYPE: "CDS", LISTENER_TYPE: "LDS", ROUTE_TYPE: "RDS"}


class SnapshotCache:
    """The current resources of every type, and who to tell when they change."""

    def __init__(self) -> None:
        self._snapshot: Mapping[str, Resources] = {}
        self._watchers: list[Callable[[], None]] = []

    @property
    def snapshot(self) -> Mapping[str, Resources]:
        """Resources by type URL."""
        return self._snapshot

    def versions(self) -> dict[str, str]:
        """The current version of each type."""
        return {t: r.version for t, r in self._snapshot.items()}

    def set(self, snapshot: Mapping[str, Resources]) -> None:
        """Replaces the resources and notifies every watcher."""
        self._snapshot = snapshot
        for watcher in list(self._watchers):
            watcher()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls ``callback`` on every change; returns the unsubscribe function."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)


@dataclass(slots=True)
class _Subscription:
    names: frozenset[str] = frozenset()
    sent_version: str | None = None
    sent_names: frozenset[str] | None = None
    nonce: str = ""
    acked_version: str = ""


@dataclass(slots=True, eq=False)
class AdsStream:
    """The protocol state of one ADS stream (no I/O: requests and changes in, responses out)."""

    cache: SnapshotCache
    """Where the current resources come from."""
    peer: str = ""
    """Envoy's node id and address, for logs."""
    nacks: int = 0
    """How many NACKs Envoy sent on this stream."""
    _subs: dict[str, _Subscription] = field(default_factory=dict)
    _nonce: int = 0

    def acked(self) -> dict[str, str]:
        """The version Envoy last ACKed on this stream, by type URL."""
        return {t: s.acked_version for t, s in self._subs.items() if s.acked_version}

    def on_request(
        self, req: discovery_pb2.DiscoveryRequest
    ) -> list[discovery_pb2.DiscoveryResponse]:
        """Handles one request from Envoy; returns what to send back."""
        type_url = req.type_url
        if type_url not in TYPE_ORDER:
            log.warning("%s asked for unsupported type %s; ignored", self.peer, type_url)
            return []
        sub = self._subs.setdefault(type_url, _Subscription())
        initial = not req.response_nonce
        if not initial and req.response_nonce != sub.nonce:
            return []  # stale: answers a response that has since been superseded
        names = frozenset(req.resource_names) - {"*"}
        if req.HasField("error_detail"):
            self.nacks += 1
            log.error(
                "%s rejected %s version %s (keeps %r): %s",
                self.peer,
                _SHORT[type_url],
                sub.sent_version,
                req.version_info,
                req.error_detail.message,
            )
            sub.names = names
            return []
        if not initial:
            sub.acked_version = req.version_info
            log.debug("%s applied %s version %s", self.peer, _SHORT[type_url], req.version_info)
        sub.names = names
        return self._respond(type_url, sub, force=initial)

    def on_change(self) -> list[discovery_pb2.DiscoveryResponse]:
        """What to send after the resources changed."""
        out: list[discovery_pb2.DiscoveryResponse] = []
        for type_url in TYPE_ORDER:
            sub = self._subs.get(type_url)
            if sub is not None:
                out += self._respond(type_url, sub, force=False)
        return out

    def _respond(
        self, type_url: str, sub: _Subscription, *, force: bool
    ) -> list[discovery_pb2.DiscoveryResponse]:
        resources = self.cache.snapshot.get(type_url)
        if resources is None:
            return []  # nothing built yet; the first snapshot will be pushed
        if type_url in _WILDCARD_TYPES:
            items = dict(resources.items)
        else:
            items = {n: resources.items[n] for n in sorted(sub.names) if n in resources.items}
        names = frozenset(items)
        if not force and sub.sent_version == resources.version and sub.sent_names == names:
            return []
        self._nonce += 1
        sub.nonce, sub.sent_version, sub.sent_names = str(self._nonce), resources.version, names
        log.info(
            "pushing %s version %s (%d resource(s)) to %s",
            _SHORT[type_url],
            resources.version,
            len(items),
            self.peer,
        )
        return [
            discovery_pb2.DiscoveryResponse(
                version_info=resources.version,
                type_url=type_url,
                nonce=sub.nonce,
                resources=list(items.values()),
            )
        ]


_CHANGED = object()


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """envoy.service.discovery.v3.AggregatedDiscoveryService, State of the World only."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache
        self.streams: set[AdsStream] = set()
        """Open streams (tests read their ACK state)."""
        self._queues: set[asyncio.Queue[object]] = set()

    def close(self) -> None:
        """Ends every open stream (on shutdown: Envoy keeps its config and reconnects)."""
        for queue in self._queues:
            queue.put_nowait(None)

    def in_sync(self) -> bool:
        """Whether some connected Envoy has ACKed the current version of every type."""
        want = self._cache.versions()
        return bool(want) and any(s.acked() == want for s in self.streams)

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
        ],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        events: asyncio.Queue[object] = asyncio.Queue()
        stream = AdsStream(self._cache, peer=context.peer())

        async def read() -> None:
            try:
                async for req in request_iterator:
                    if not stream.peer.startswith("envoy ") and req.node.id:
                        stream.peer = f"envoy {req.node.id} ({context.peer()})"
                    events.put_nowait(req)
            finally:
                events.put_nowait(None)

        unwatch = self._cache.watch(lambda: events.put_nowait(_CHANGED))
        reader = asyncio.create_task(read())
        self.streams.add(stream)
        self._queues.add(events)
        log.info("ADS stream opened by %s", context.peer())
        try:
            while (event := await events.get()) is not None:
                if event is _CHANGED:
                    responses = stream.on_change()
                else:
                    assert isinstance(event, discovery_pb2.DiscoveryRequest)
                    responses = stream.on_request(event)
                for response in responses:
                    yield response
        finally:
            self.streams.discard(stream)
            self._queues.discard(events)
            unwatch()
            reader.cancel()
            log.info("ADS stream of %s closed", stream.peer)

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse
        ],
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "only State-of-the-World ADS is served")
        yield discovery_pb2.DeltaDiscoveryResponse()  # pragma: no cover - unreachable
