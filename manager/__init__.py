"""bai manager: the control plane (sessions, scheduler, agent registry, keypair auth).

Layers: :mod:`bai.manager.api` (gRPC servicers, thin) → :mod:`bai.manager.domain` (use cases,
lifecycle, scheduler, ports, errors) ← :mod:`bai.manager.adapters` (SQLAlchemy repositories,
agent gRPC client pool, event bus). :mod:`bai.manager.server` is the composition root.
"""
