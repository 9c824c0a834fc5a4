"""The system of record: SQLAlchemy models, sessions and Alembic migrations.

Only the API and the conductor import this package; compute workers never do.
"""
