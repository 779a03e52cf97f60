"""Alembic migrations of the central database, shipped inside the package and
applied by `shimmfa central init` through `shimmfa.central.schema`; they
import only the central models."""
