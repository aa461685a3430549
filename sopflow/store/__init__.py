"""The relational read model: the delivery ledger, staff tasks, the journey ledger, and the
plans and deployments (with their history).

SQLAlchemy 2 over a SQLite file by default, PostgreSQL when SOPFLOW_DATABASE_URL says so;
the schema is managed by Alembic (`sopflow db upgrade`, run by the worker at start-up).
"""
