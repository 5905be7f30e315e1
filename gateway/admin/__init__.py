"""Backend.AI's admin API surface: GraphQL at ``/admin/gql`` and the session-event SSE stream."""

from bai.gateway.admin.events import router as events_router
from bai.gateway.admin.graphql import router as graphql_router

__all__ = ["events_router", "graphql_router"]
