"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vmflow.db import migrate
from vmflow.db.models import Base


def test_models_and_migrations_agree(db):
    with db.write_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    assert migrate.current(db) is not None
