"""bai app proxy coordinator: circuits, Envoy's xDS control plane (ADS) and ext_authz.

Envoy is the data plane. The coordinator keeps the circuits (routes from a frontend port or
subdomain to an app's Unix socket), persists them in a state file, pushes them to Envoy over one
aggregated xDS stream and answers Envoy's authorization checks of HTTP requests.
"""
