"""Fixtures of the outbox and sender tests (`outboxes`)."""

from outboxes import opened, root, senders  # noqa: F401 - fixtures, used by name
