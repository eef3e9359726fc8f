"""Persistence: ORM tables, engine/session setup, Alembic migrations."""
