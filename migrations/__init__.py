"""Database roles, schemas and Alembic migrations, one history per service schema."""
