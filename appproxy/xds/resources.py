"""Circuits as Envoy resources: listeners (LDS), route configurations (RDS), clusters (CDS).

- Every circuit has a cluster ``circuit_<id>`` whose one endpoint is the app's Unix socket
  (``pipe``), with connect-only active health checks and local-origin outlier detection, and
  panic routing off, so a dead app is answered 503 at once instead of being dialled.
- A port-mode HTTP circuit has a listener ``circuit_<id>`` on its port whose HTTP connection
  manager takes route configuration ``circuit_<id>`` over ADS; a TCP circuit's listener relays
  bytes with ``tcp_proxy``. One listener ``bai_subdomain`` on the subdomain port serves route
  configuration ``bai_subdomain``: one virtual host per subdomain circuit, by Host header.
- HTTP requests pass the ext_authz filter, which asks the coordinator (cluster ``bai_authz``)
  with the circuit id as context extension; a request whose Cookie header already carries the
  circuit's permit matches a first route on which ext_authz is off (the fast path: Envoy
  checks the permit itself, so steady-state traffic never leaves Envoy).

Versions are content hashes, so a restarted coordinator offers Envoy the very versions it has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bai.appproxy.domain.model import Circuit, FrontendMode, Frontends, Protocol
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2, json_format, message

__all__ = [
    "AUTHZ_CLUSTER",
    "CLUSTER_TYPE",
    "CONTEXT_CIRCUIT_ID",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "SUBDOMAIN_NAME",
    "TYPE_ORDER",
    "ProxySettings",
    "Resources",
    "build_snapshot",
    "resource_name",
]

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_ORDER = (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE)
"""The order in which changes are pushed: clusters before the listeners and routes using them."""

AUTHZ_CLUSTER = "bai_authz"
"""Static cluster (in the bootstrap) of the coordinator's ext_authz server."""
SUBDOMAIN_NAME = "bai_subdomain"
"""Name of the shared subdomain listener and its route configuration."""
CONTEXT_CIRCUIT_ID = "circuit_id"
"""ext_authz context extension naming the circuit a request is for."""

_EXT_AUTHZ = "envoy.filters.http.ext_authz"
_HCM_TYPE = "type.googleapis.com/" + (
    http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR.full_name
)
_EXT_AUTHZ_TYPE = "type.googleapis.com/" + ext_authz_pb2.ExtAuthz.DESCRIPTOR.full_name
_PER_ROUTE_TYPE = "type.googleapis.com/" + ext_authz_pb2.ExtAuthzPerRoute.DESCRIPTOR.full_name
_ROUTER_TYPE = "type.googleapis.com/" + router_pb2.Router.DESCRIPTOR.full_name
_TCP_PROXY_TYPE = "type.googleapis.com/" + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How circuits become Envoy configuration."""

    frontends: Frontends = field(default_factory=Frontends)
    """Public host, apps domain and subdomain port."""
    bind_host: str = "127.0.0.1"
    """Address Envoy's frontend listeners bind to."""
    health_check_interval_s: float = 2.0
    """Active health check period of app endpoints (also while they carry no traffic)."""
    connect_timeout_s: float = 2.0
    """How long Envoy waits to connect to an app's socket."""
    stream_idle_timeout_s: int = 3600
    """An HTTP stream (e.g. an idle terminal websocket) is closed after this long silent."""
    cookie_fast_path: bool = True
    """Let Envoy admit requests carrying the permit cookie without asking ext_authz."""


@dataclass(frozen=True, slots=True)
class Resources:
    """The resources of one type, by name, and their version."""

    version: str
    """Content hash of the resources."""
    items: Mapping[str, any_pb2.Any]
    """Packed resources by name."""


def resource_name(circuit: Circuit) -> str:
    """Name of a circuit's cluster, and of its listener and route configuration."""
    return f"circuit_{circuit.id}"


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _hcm(name: str, route_config: str, settings: ProxySettings) -> dict[str, Any]:
    return {
        "@type": _HCM_TYPE,
        "stat_prefix": name,
        "codec_type": "AUTO",
        # No x-request-id: nothing traces these requests, and it costs a UUID per request.
        "generate_request_id": False,
        "rds": {
            "route_config_name": route_config,
            "config_source": {"ads": {}, "resource_api_version": "V3"},
        },
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": f"{settings.stream_idle_timeout_s}s",
        # Envoy waits this long for the client to close first after a final response; the
        # default (1 s) makes websocket clients that wait for the server's FIN hang for 1 s.
        "delayed_close_timeout": "0.1s",
        "http_filters": [
            {
                "name": _EXT_AUTHZ,
                "typed_config": {
                    "@type": _EXT_AUTHZ_TYPE,
                    "grpc_service": {
                        "envoy_grpc": {"cluster_name": AUTHZ_CLUSTER},
                        "timeout": "2s",
                    },
                    "transport_api_version": "V3",
                    "failure_mode_allow": False,
                    "status_on_error": {"code": "ServiceUnavailable"},
                    "allowed_headers": {"patterns": [{"exact": "cookie", "ignore_case": True}]},
                },
            },
            {
                "name": "envoy.filters.http.router",
                # Envoy's performance FAQ: no per-request dynamic stats, no x-envoy-* headers
                # (apps need neither; they cost CPU on every request).
                "typed_config": {
                    "@type": _ROUTER_TYPE,
                    "dynamic_stats": False,
                    "suppress_envoy_headers": True,
                },
            },
        ],
    }


def _listener(name: str, port: int, filters: list[dict[str, Any]], bind: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": bind, "port_value": port}},
        "filter_chains": [{"filters": filters}],
    }


def _http_listener(name: str, port: int, settings: ProxySettings) -> dict[str, Any]:
    hcm = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": _hcm(name, name, settings),
    }
    return _listener(name, port, [hcm], settings.bind_host)


def _tcp_listener(circuit: Circuit, settings: ProxySettings) -> dict[str, Any]:
    name = resource_name(circuit)
    proxy = {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": _TCP_PROXY_TYPE,
            "stat_prefix": name,
            "cluster": name,
            "idle_timeout": f"{settings.stream_idle_timeout_s}s",
        },
    }
    assert circuit.frontend_port is not None
    return _listener(name, circuit.frontend_port, [proxy], settings.bind_host)


def _cluster(circuit: Circuit, settings: ProxySettings) -> dict[str, Any]:
    name = resource_name(circuit)
    interval = _duration(settings.health_check_interval_s)
    endpoint = {"address": {"pipe": {"path": circuit.spec.upstream_socket_path}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": _duration(settings.connect_timeout_s),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
        # Connect-only checks: any app that accepts a connection is alive.
        "health_checks": [
            {
                "timeout": "1s",
                "interval": interval,
                "no_traffic_interval": interval,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "tcp_health_check": {},
            }
        ],
        # Only failures to reach the app eject it, never the app's own 5xx answers.
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 3,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_consecutive_5xx": 0,
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_success_rate": 0,
            "interval": interval,
            "base_ejection_time": "5s",
            "max_ejection_percent": 100,
            "successful_active_health_check_uneject_host": True,
        },
        # One endpoint: when it is unhealthy, answer 503 rather than "panic" and dial it.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }


def _ext_authz_per_route(circuit: Circuit | None) -> dict[str, Any]:
    if circuit is None:
        return {"@type": _PER_ROUTE_TYPE, "disabled": True}
    return {
        "@type": _PER_ROUTE_TYPE,
        "check_settings": {"context_extensions": {CONTEXT_CIRCUIT_ID: circuit.id}},
    }


def _virtual_host(circuit: Circuit, domains: list[str], settings: ProxySettings) -> dict[str, Any]:
    action = {"cluster": resource_name(circuit), "timeout": "0s"}
    routes: list[dict[str, Any]] = []
    if settings.cookie_fast_path:
        permit = {
            "name": "cookie",
            "string_match": {"contains": f"{circuit.cookie_name}={circuit.permit}"},
        }
        routes.append(
            {
                "name": "permit",
                "match": {"prefix": "/", "headers": [permit]},
                "route": action,
                "typed_per_filter_config": {_EXT_AUTHZ: _ext_authz_per_route(None)},
            }
        )
    routes.append({"name": "check", "match": {"prefix": "/"}, "route": action})
    return {
        "name": resource_name(circuit),
        "domains": domains,
        "routes": routes,
        "typed_per_filter_config": {_EXT_AUTHZ: _ext_authz_per_route(circuit)},
    }


def _subdomain_routes(circuits: Iterable[Circuit], settings: ProxySettings) -> dict[str, Any]:
    domain = settings.frontends.apps_domain
    hosts = [
        _virtual_host(c, [f"{c.id}.{domain}", f"{c.id}.{domain}:*"], settings) for c in circuits
    ]
    unknown = {
        "name": "unknown",
        "domains": ["*"],
        "routes": [
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 404, "body": {"inline_string": "no such app\n"}},
            }
        ],
        "typed_per_filter_config": {_EXT_AUTHZ: _ext_authz_per_route(None)},
    }
    return {"name": SUBDOMAIN_NAME, "virtual_hosts": [*hosts, unknown]}


def _pack(msg_type: type[message.Message], doc: dict[str, Any]) -> any_pb2.Any:
    msg = json_format.ParseDict(doc, msg_type())
    packed = any_pb2.Any()
    packed.Pack(msg, deterministic=True)
    return packed


def _resources(items: dict[str, any_pb2.Any]) -> Resources:
    digest = hashlib.sha256()
    for name in sorted(items):
        digest.update(name.encode() + b"\0")
        digest.update(items[name].value + b"\0")
    return Resources(version=digest.hexdigest()[:16], items=items)


def build_snapshot(circuits: Iterable[Circuit], settings: ProxySettings) -> dict[str, Resources]:
    """Every resource for ``circuits``, by type URL."""
    listeners: dict[str, any_pb2.Any] = {}
    routes: dict[str, any_pb2.Any] = {}
    clusters: dict[str, any_pb2.Any] = {}
    subdomain: list[Circuit] = []
    for circuit in circuits:
        name = resource_name(circuit)
        clusters[name] = _pack(cluster_pb2.Cluster, _cluster(circuit, settings))
        if circuit.spec.frontend_mode is FrontendMode.SUBDOMAIN:
            subdomain.append(circuit)
            continue
        assert circuit.frontend_port is not None
        if circuit.spec.protocol is Protocol.TCP:
            listeners[name] = _pack(listener_pb2.Listener, _tcp_listener(circuit, settings))
            continue
        listeners[name] = _pack(
            listener_pb2.Listener, _http_listener(name, circuit.frontend_port, settings)
        )
        doc = {"name": name, "virtual_hosts": [_virtual_host(circuit, ["*"], settings)]}
        routes[name] = _pack(route_pb2.RouteConfiguration, doc)
    listeners[SUBDOMAIN_NAME] = _pack(
        listener_pb2.Listener,
        _http_listener(SUBDOMAIN_NAME, settings.frontends.subdomain_port, settings),
    )
    routes[SUBDOMAIN_NAME] = _pack(
        route_pb2.RouteConfiguration, _subdomain_routes(subdomain, settings)
    )
    return {
        CLUSTER_TYPE: _resources(clusters),
        LISTENER_TYPE: _resources(listeners),
        ROUTE_TYPE: _resources(routes),
    }
