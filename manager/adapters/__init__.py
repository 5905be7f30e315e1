"""Adapters: SQLAlchemy repositories, the agent gRPC client pool, the in-process event bus."""
