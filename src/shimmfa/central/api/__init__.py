"""The central service's HTTP API under `/api/v1`: one router per resource,
`Annotated` dependencies for who is calling, pydantic schemas kept apart
from the tables, and every domain error mapped to HTTP in `errors.py`. It
may import the rest of `shimmfa.central`, core and transport, never the
shim."""
