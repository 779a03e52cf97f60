"""The shape of the package: `core/` is pure (no clock, randomness, files or
sockets of its own), and each core module's public API is pinned."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import shimmfa
import shimmfa.core

CORE = Path(shimmfa.core.__file__).parent
CORE_FILES = sorted(CORE.rglob("*.py"))

# Calls that read a clock, a random source, a file or the network.
FORBIDDEN_CALLS = {
    "open",
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.localtime",
    "time.gmtime",
    "datetime.now",
    "datetime.utcnow",
    "datetime.today",
    "date.today",
    "dt.datetime.now",
    "dt.datetime.utcnow",
    "dt.datetime.today",
    "dt.date.today",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.date.today",
    "os.urandom",
    "os.open",
    "os.getrandom",
    "io.open",
    "Path.open",
    "uuid.uuid1",
    "uuid.uuid4",
}
# `time` as a whole: core neither reads the clock nor sleeps.
FORBIDDEN_MODULES = {
    "time",
    "random",
    "secrets",
    "socket",
    "ssl",
    "sqlite3",
    "subprocess",
    "asyncio",
}
FORBIDDEN_ATTRIBUTES = {"read_text", "read_bytes", "write_text", "write_bytes"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _top(a.name) in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if _top(module) in FORBIDDEN_MODULES:
                found.append(f"from {module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS or _top(name) in FORBIDDEN_MODULES:
                found.append(f"call {name}()")
            if isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_ATTRIBUTES:
                found.append(f"call .{node.func.attr}()")
    return found


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_the_scanner_catches_what_it_looks_for() -> None:
    impure = (
        "import time, random\nimport socket\nfrom secrets import token_bytes\n"
        "from time import monotonic\n"
        "def f(p):\n"
        "    open('x'); time.time(); time.monotonic(); random.random()\n"
        "    socket.socket(); dt.datetime.now(); os.urandom(4); p.read_text()\n"
    )
    found = _violations(impure)
    for expected in (
        "import time",
        "import random",
        "import socket",
        "from secrets import ...",
        "from time import ...",
        "call open()",
        "call time.time()",
        "call time.monotonic()",
        "call random.random()",
        "call socket.socket()",
        "call dt.datetime.now()",
        "call os.urandom()",
        "call .read_text()",
    ):
        assert expected in found


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_reads_no_clock_randomness_files_or_sockets(path: Path) -> None:
    assert _violations(path.read_text(encoding="utf-8")) == []


# -- pinned public API ------------------------------------------------------------------------

EXPORTED = {
    "shimmfa.core.totp": {
        "ALGORITHMS",
        "MAX_WINDOW",
        "UNKNOWN_KEY",
        "AuthOutcome",
        "AuthResult",
        "AuthState",
        "AuthStateStore",
        "InvalidSecretError",
        "MemoryAuthStore",
        "TechnicianRecord",
        "TotpGate",
        "TotpPolicy",
        "decode_secret",
        "generate_totp_secret",
        "matching_counter",
        "provisioning_uri",
        "totp_code",
        "wellformed_code",
    },
    "shimmfa.core.chain": {
        "MODES",
        "RESET_LABEL",
        "FactorDefinition",
        "MFAChainBreached",
        "MFAOrchestrator",
        "Policy",
        "RandomSource",
        "Result",
    },
    "shimmfa.core.chain_policy": {"MODES", "RESET_LABEL", "FactorDefinition", "Policy"},
    "shimmfa.core.chain_state": {
        "FORMAT_VERSION",
        "ChainState",
        "ChainStateStore",
        "MemoryChainStore",
    },
    "shimmfa.core.gate": {
        "BANNER",
        "BREAKGLASS_ID",
        "EMERGENCY_NOTICE",
        "FAILURE",
        "FORMAT_HELP",
        "Action",
        "AuthFailed",
        "Authenticate",
        "Discarded",
        "ForwardToDevice",
        "FormatRejected",
        "GateConfig",
        "GateMachine",
        "GateState",
        "SendToTechnician",
        "SessionClosed",
        "SessionOpened",
    },
    "shimmfa.core.heartbeat": {
        "FIELDS",
        "MAX_COUNTER",
        "MAX_WIRE_BYTES",
        "STATES",
        "HeartbeatVerifier",
        "Rejection",
        "VerifiedHeartbeat",
        "canonical",
        "checked_wire",
        "format_sent_at",
        "heartbeat_payload",
        "sign_heartbeat",
        "verify_heartbeat",
    },
    "shimmfa.core.events": {
        "CATALOGUE",
        "Event",
        "EventKind",
        "FieldValue",
        "clean_text",
        "from_json",
        "iso_time",
        "make_event",
        "marked_late",
        "new_event_id",
        "shown_id",
        "to_json",
    },
    "shimmfa.core.syslog": {
        "FACILITY_AUDIT",
        "SD_ID",
        "cef",
        "cef_message",
        "cef_severity",
        "heartbeat_from_params",
        "octet_frame",
        "rfc5424",
    },
    "shimmfa.core.shamir": {
        "MAX_PARTS",
        "combine",
        "gf_div",
        "gf_mul",
        "random_x_tags",
        "split",
    },
    "shimmfa.core.toc": {
        "FIELDS",
        "MAX_NOTE_CHARS",
        "MAX_SECRET_CHARS",
        "MAX_TOC_CHARS",
        "Toc",
        "TocGroup",
        "TocRejection",
        "check_admissible",
        "combine_tocs",
        "note_problem",
        "parse_toc",
        "quorum_reached",
        "secret_text_problem",
    },
    "shimmfa.core.toc_deal": {
        "MAX_GROUPS",
        "combine_groups",
        "deal",
        "deal_groups",
        "new_group_id",
        "player_count",
    },
    "shimmfa.core.bundle": {
        "CONTEXT",
        "MAX_ANSWER_CHARS",
        "MIN_SECRET_BYTES",
        "ROLES",
        "BundleRejection",
        "BundleTechnician",
        "TechnicianBundle",
        "open_bundle",
        "pinned_key",
    },
    "shimmfa.core.session": {
        "DEVICE_HANGUP",
        "IDLE_TIMEOUT",
        "INTERNAL_ERROR",
        "MAX_DURATION",
        "SHUTDOWN",
        "TECHNICIAN_HANGUP",
        "new_session_id",
        "valid_session_id",
    },
}

CORE_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(shimmfa.core.__path__, "shimmfa.core.")
    if not info.ispkg
)


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_exported_members(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == EXPORTED[name]
    assert len(module.__all__) == len(set(module.__all__))
    for member in module.__all__:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


@pytest.mark.parametrize("name", CORE_MODULES)
def test_every_public_class_and_function_of_a_core_module_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    defined_here = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    }
    assert defined_here <= set(module.__all__), defined_here - set(module.__all__)


def test_pinned_modules_exist() -> None:
    assert set(EXPORTED) <= set(CORE_MODULES)


# -- the layout: small files, one folder per concern ------------------------------------------

SRC = Path(shimmfa.__file__).parent
MAX_LINES = 400


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines: it is two jobs"


def test_the_shim_package_shows_its_parts_at_a_glance() -> None:
    shim = SRC / "shim"
    entries = sorted(p.name for p in shim.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 10, entries
    packages = [p for p in shim.iterdir() if (p / "__init__.py").is_file()]
    assert {p.name for p in packages} == {
        "link",
        "recorder",
        "reporting",
        "settings",
        "state",
        "tamper",
    }


@pytest.mark.parametrize(
    "name",
    sorted(
        info.name
        for info in pkgutil.walk_packages(shimmfa.__path__, "shimmfa.")
        if info.ispkg and info.name != "shimmfa.cli"
    ),
)
def test_every_package_says_what_it_is_and_what_it_may_import(name: str) -> None:
    doc = importlib.import_module(name).__doc__ or ""
    assert len(doc.split()) >= 12, f"{name} has no docstring saying what it is"
    if name.startswith("shimmfa.shim.") or name == "shimmfa.transport":
        assert "import" in doc, f"{name}'s docstring does not say what it may import"


SEED_PATHS = {
    "shimmfa.shim.recorder": {
        "Direction",
        "SessionMeta",
        "SessionRecorder",
        "SiemTransport",
        "StorageExhaustedError",
    },
    "shimmfa.shim.tamper": {
        "FileSensor",
        "GpioSensor",
        "HeartbeatRecord",
        "Latch",
        "LatchStore",
        "ModemSensor",
        "NullSensor",
        "TamperDetector",
        "TamperEvent",
        "TamperSensor",
    },
}


@pytest.mark.parametrize("name", sorted(SEED_PATHS))
def test_the_seed_names_stay_where_the_seed_put_them_as_re_exports(name: str) -> None:
    package = importlib.import_module(name)
    assert set(package.__all__) == SEED_PATHS[name]
    for member in package.__all__:
        value = getattr(package, member)
        defined_in = getattr(value, "__module__", name)
        assert defined_in != name, f"{name}.{member} is a copy, not a re-export"
