"""The quorum package's public API, pinned: what the central service and
the shim build on (the app factory, the stores and their protocols, the
registry, the dealer, the oracle), and nothing public left unexported."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import shimmfa.quorum

EXPORTED = {
    "age_tocs": {
        "ARMOR_BEGIN", "ARMOR_END", "MAX_SEALED_CHARS", "SealProblem", "armored_payload",
        "identity_file_text", "new_identity", "open_sealed", "open_toc", "parse_identity",
        "parse_recipient", "read_identity_file", "seal", "seal_toc",
    },
    "api": {
        "STATUS", "AddToc", "ApproverHook", "Error", "NewSession", "Session",
        "SessionCredentials", "SessionKeyEncryptionKey", "TOTPCode", "create_app",
    },
    "approvers": {
        "MAX_NAME_CHARS", "Approver", "approver_of", "check_release", "groups_held",
        "sent_already",
    },
    "client": {"OracleClient"},
    "dealing": {
        "PlayerSpec", "deal_document", "dealt_groups", "normalised_secret", "parse_group",
        "parse_player",
    },
    "holder": {"load_toc", "read_text"},
    "oracle": {"DEFAULT_TTL", "MAX_TTL", "MIN_TTL", "Oracle", "valid_session_id"},
    "records": {
        "Change", "GroupRegistry", "Refusal", "SealedToc", "SessionRecord", "SessionState",
        "SessionStore", "TocStatus", "applied", "deal_record",
    },
    "refusals": {
        "DEFAULT_TTL", "MAX_TTL", "MIN_TTL", "TOC_REFUSALS", "below", "check_sender",
        "check_ttl", "ciphertext_again", "closed", "expired", "full", "not_found", "not_own",
        "problem", "unknown_group",
    },
    "serve": {"ServeOptions", "build_app", "load_deal", "run"},
    "session_keys": {"IDENTITY_CHARS", "SessionKeys", "new_session_keys", "open_identity"},
    "store_memory": {"MemoryGroupRegistry", "MemorySessionStore"},
    "store_sql": {
        "SqlGroupRegistry", "SqlSessionStore", "create_tables", "group_table", "metadata",
        "session_table", "toc_table",
    },
    "views": {
        "AuditHook", "OracleEvent", "SessionCredentials", "SessionView", "TotpCode", "view_of",
    },
}  # fmt: skip
MODULES = sorted(info.name for info in pkgutil.iter_modules(shimmfa.quorum.__path__))


def test_every_module_is_pinned() -> None:
    assert sorted(EXPORTED) == MODULES


@pytest.mark.parametrize("name", MODULES)
def test_exported_members(name: str) -> None:
    module = importlib.import_module(f"shimmfa.quorum.{name}")
    assert set(module.__all__) == EXPORTED[name]
    for member in module.__all__:
        assert hasattr(module, member)
    defined_here = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }
    assert defined_here <= set(module.__all__), defined_here - set(module.__all__)


def test_the_sql_tables_have_their_own_metadata() -> None:
    from shimmfa.quorum.store_sql import metadata

    assert sorted(metadata.tables) == ["quorum_groups", "quorum_sessions", "quorum_tocs"]
