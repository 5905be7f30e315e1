"""Backend.AI's admin API surface: GraphQL at ``/admin/gql`` and the session-event SSE stream."""

from bai.gateway.admin.events import router as events_router
from bai.gateway.admin.graphql import router as graphql_router
from bai.gateway.admin.graphql import schema as _schema
from bai.gateway.admin.login import router as login_router
from bai.gateway.admin.subscriptions import subscription_router

subscriptions_router = subscription_router(_schema)

__all__ = ["events_router", "graphql_router", "login_router", "subscriptions_router"]
