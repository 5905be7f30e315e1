"""bai gateway: Backend.AI-compatible REST and the manager's gRPC API as REST/JSON.

Stateless: it forwards each request's keypair signature to the manager over gRPC and maps the
answer (or the error) back to HTTP. Run it with ``python -m bai.gateway serve``.
"""

from bai.gateway.app import create_app
from bai.gateway.config import GatewayConfig

__all__ = ["GatewayConfig", "create_app"]
