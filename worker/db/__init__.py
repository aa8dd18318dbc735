"""The database connection: engines, sessions, after-commit hooks and the schema (Alembic).
Imports ``core`` only; no SQL of the product's own (that is ``store``)."""
