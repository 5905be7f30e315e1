"""The ADS (State of the World) protocol state machine, request by request."""

from __future__ import annotations

from bai.appproxy.xds.ads import AdsStream, SnapshotCache
from bai.appproxy.xds.resources import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, Resources
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2


def _items(*names: str) -> dict[str, any_pb2.Any]:
    return {n: any_pb2.Any(type_url="t", value=n.encode()) for n in names}


def _snapshot(
    version: str, clusters: tuple[str, ...], routes: tuple[str, ...]
) -> dict[str, Resources]:
    return {
        CLUSTER_TYPE: Resources(f"c{version}", _items(*clusters)),
        LISTENER_TYPE: Resources(f"l{version}", _items(*routes)),
        ROUTE_TYPE: Resources(f"r{version}", _items(*routes)),
    }


def _req(
    type_url: str, version: str = "", nonce: str = "", names: tuple[str, ...] = (), error: str = ""
) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(
        type_url=type_url, version_info=version, response_nonce=nonce, resource_names=list(names)
    )
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def test_initial_requests_are_answered_and_acks_are_quiet() -> None:
    cache = SnapshotCache()
    cache.set(_snapshot("1", ("a", "b"), ("ra",)))
    stream = AdsStream(cache)
    [cds] = stream.on_request(_req(CLUSTER_TYPE))
    assert cds.version_info == "c1" and len(cds.resources) == 2 and cds.nonce
    assert stream.on_request(_req(CLUSTER_TYPE, "c1", cds.nonce)) == []
    assert stream.acked() == {CLUSTER_TYPE: "c1"}
    # RDS is by name: only what is subscribed, and only what exists.
    [rds] = stream.on_request(_req(ROUTE_TYPE, names=("ra", "missing")))
    assert [r.value for r in rds.resources] == [b"ra"]
    # An Envoy that already has a version still gets an answer on a new stream.
    fresh = AdsStream(cache)
    assert len(fresh.on_request(_req(CLUSTER_TYPE, "c1"))) == 1


def test_changes_are_pushed_in_order_and_only_when_versions_move() -> None:
    cache = SnapshotCache()
    cache.set(_snapshot("1", ("a",), ("ra",)))
    stream = AdsStream(cache)
    for type_url in (ROUTE_TYPE, LISTENER_TYPE, CLUSTER_TYPE):
        [resp] = stream.on_request(_req(type_url, names=("ra",) if type_url == ROUTE_TYPE else ()))
        stream.on_request(
            _req(type_url, resp.version_info, resp.nonce, ("ra",) if type_url == ROUTE_TYPE else ())
        )
    assert stream.on_change() == []
    cache.set(_snapshot("2", ("a", "b"), ("ra",)))
    pushed = stream.on_change()
    assert [r.type_url for r in pushed] == [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE]
    assert [r.version_info for r in pushed] == ["c2", "l2", "r2"]


def test_stale_nonces_are_ignored_and_nacks_are_not_resent() -> None:
    cache = SnapshotCache()
    cache.set(_snapshot("1", ("a",), ()))
    stream = AdsStream(cache)
    [first] = stream.on_request(_req(CLUSTER_TYPE))
    cache.set(_snapshot("2", ("a", "b"), ()))
    [second] = stream.on_change()
    # The ACK of the first response arrives late: stale, nothing happens.
    assert stream.on_request(_req(CLUSTER_TYPE, "c1", first.nonce)) == []
    assert stream.acked() == {}
    # Envoy rejects the second: logged, counted, not resent.
    assert stream.on_request(_req(CLUSTER_TYPE, "c1", second.nonce, error="bad cluster")) == []
    assert stream.nacks == 1
    assert stream.on_change() == []
    # The next change is pushed.
    cache.set(_snapshot("3", ("a",), ()))
    [third] = stream.on_change()
    assert third.version_info == "c3" and third.nonce != second.nonce


def test_new_route_names_get_the_same_version_again() -> None:
    cache = SnapshotCache()
    cache.set(_snapshot("1", (), ("ra", "rb")))
    stream = AdsStream(cache)
    [one] = stream.on_request(_req(ROUTE_TYPE, names=("ra",)))
    [two] = stream.on_request(_req(ROUTE_TYPE, one.version_info, one.nonce, ("ra", "rb")))
    assert two.version_info == one.version_info == "r1"
    assert sorted(r.value for r in two.resources) == [b"ra", b"rb"]
    assert stream.on_request(_req(ROUTE_TYPE, "r1", two.nonce, ("ra", "rb"))) == []
    assert stream.on_request(_req("type.googleapis.com/unknown.Type")) == []
