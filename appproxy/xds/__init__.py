"""Everything Envoy talks to or runs from: xDS resources, the ADS and ext_authz servers, the
bootstrap and the Envoy process."""
