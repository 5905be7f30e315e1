"""Alembic migration environment of the manager database."""
