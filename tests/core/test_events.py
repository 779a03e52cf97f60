"""The event catalogue and its wire formats (`shimmfa.core.events`).

Rendered messages are read back by the small parsers in this file, written
from RFC 5424 §6 (ABNF), RFC 6587 §3.4.1 and the CEF rules (pipes and
backslashes escaped in the header; backslash, '=' and newlines in extension
values), not from the renderer. The property tests state their invariant in
their names.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from shimmfa.core.events import (
    CATALOGUE,
    Event,
    from_json,
    make_event,
    marked_late,
    new_event_id,
    to_json,
)
from shimmfa.core.heartbeat import heartbeat_payload, sign_heartbeat, verify_heartbeat
from shimmfa.core.syslog import (
    cef,
    cef_message,
    cef_severity,
    heartbeat_from_params,
    octet_frame,
    rfc5424,
)
from shimmfa.errors import HeartbeatError

AT = 1_700_000_000.123456  # 2023-11-14T22:13:20.123456Z
ID = "018bcfe569f430313233343536373839"

# -- an RFC 5424 parser, from the ABNF of §6 -----------------------------------------------


class MalformedError(Exception):
    pass


@dataclass
class Syslog:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: list[tuple[str, list[tuple[str, str]]]]
    msg: bytes


_PRINTUS = re.compile(rb"[\x21-\x7e]+")
_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})"
)
_SD_NAME = re.compile(rb"[\x21-\x7e]{1,32}")


def _field(data: bytes, pos: int, limit: int, what: str) -> tuple[str, int]:
    end = data.find(b" ", pos)
    if end < 0:
        raise MalformedError(f"{what}: no space after it")
    token = data[pos:end]
    if not _PRINTUS.fullmatch(token) or len(token) > limit:
        raise MalformedError(f"{what}: {token!r} is not 1-{limit} printable US-ASCII")
    return token.decode("ascii"), end + 1


def _sd_name(data: bytes, pos: int) -> tuple[str, int]:
    end = pos
    while end < len(data) and 0x21 <= data[end] <= 0x7E and data[end] not in b'= ]"':
        end += 1
    name = data[pos:end]
    if not _SD_NAME.fullmatch(name):
        raise MalformedError(f"bad SD-NAME at {pos}: {data[pos : pos + 40]!r}")
    return name.decode("ascii"), end


def _param_value(data: bytes, pos: int) -> tuple[str, int]:
    out = bytearray()
    while True:
        if pos >= len(data):
            raise MalformedError("PARAM-VALUE not closed")
        byte = data[pos]
        if byte == 0x5C and pos + 1 < len(data) and data[pos + 1] in b'"\\]':
            out.append(data[pos + 1])
            pos += 2
        elif byte == 0x22:
            break
        elif byte == 0x5D:
            raise MalformedError("unescaped ']' in PARAM-VALUE")
        else:
            out.append(byte)
            pos += 1
    try:
        return out.decode("utf-8"), pos + 1
    except UnicodeDecodeError:
        raise MalformedError("PARAM-VALUE is not UTF-8") from None


def parse_syslog(data: bytes) -> Syslog:
    match = re.match(rb"<(\d{1,3})>([1-9]\d{0,2}) ", data)
    if not match:
        raise MalformedError(f"bad PRI/VERSION: {data[:12]!r}")
    pri = int(match[1])
    if pri > 191 or (len(match[1]) > 1 and match[1].startswith(b"0")):
        raise MalformedError(f"PRI {match[1]!r}")
    pos = match.end()
    timestamp, pos = _field(data, pos, 64, "TIMESTAMP")
    if timestamp != "-":
        stamp = _TIMESTAMP.fullmatch(timestamp.encode())
        if not stamp:
            raise MalformedError(f"TIMESTAMP {timestamp!r}")
        try:
            dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))  # a real date
        except ValueError:
            raise MalformedError(f"TIMESTAMP {timestamp!r} is no date") from None
    hostname, pos = _field(data, pos, 255, "HOSTNAME")
    app, pos = _field(data, pos, 48, "APP-NAME")
    procid, pos = _field(data, pos, 128, "PROCID")
    msgid, pos = _field(data, pos, 32, "MSGID")
    elements: list[tuple[str, list[tuple[str, str]]]] = []
    if data[pos : pos + 1] == b"-":
        pos += 1
    else:
        while data[pos : pos + 1] == b"[":
            sd_id, pos = _sd_name(data, pos + 1)
            params: list[tuple[str, str]] = []
            while data[pos : pos + 1] == b" ":
                name, pos = _sd_name(data, pos + 1)
                if data[pos : pos + 2] != b'="':
                    raise MalformedError(f'no =" after {name}')
                value, pos = _param_value(data, pos + 2)
                params.append((name, value))
            if data[pos : pos + 1] != b"]":
                raise MalformedError(f"SD-ELEMENT not closed at {pos}")
            pos += 1
            elements.append((sd_id, params))
        if not elements:
            raise MalformedError("STRUCTURED-DATA is neither '-' nor an SD-ELEMENT")
    if pos == len(data):
        msg = b""
    elif data[pos : pos + 1] == b" ":
        msg = data[pos + 1 :]
    else:
        raise MalformedError(f"junk after STRUCTURED-DATA: {data[pos : pos + 20]!r}")
    return Syslog(pri, int(match[2]), timestamp, hostname, app, procid, msgid, elements, msg)


def unframe(stream: bytes) -> list[bytes]:
    """RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG, repeated."""
    out = []
    while stream:
        match = re.match(rb"([1-9]\d*) ", stream)
        assert match, f"bad frame start {stream[:20]!r}"
        size = int(match[1])
        body = stream[match.end() : match.end() + size]
        assert len(body) == size, "frame cut short"
        out.append(body)
        stream = stream[match.end() + size :]
    return out


# -- a CEF parser -------------------------------------------------------------------------


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    header: list[str] = []
    current = []
    pos = 0
    while len(header) < 7:
        ch = text[pos]
        if ch == "\\" and text[pos + 1] in "\\|":
            current.append(text[pos + 1])
            pos += 2
            continue
        assert ch not in "\r\n", "newline in a CEF header"
        if ch == "|":
            header.append("".join(current))
            current = []
        else:
            current.append(ch)
        pos += 1
    extension = text[pos:]
    # Split at every unescaped '=': the key is the word before it.
    pieces = []
    start = 0
    i = 0
    while i < len(extension):
        if extension[i] == "\\":
            i += 2
            continue
        if extension[i] == "=":
            pieces.append((start, i))
        i += 1
    pairs: dict[str, str] = {}
    for index, (_, eq) in enumerate(pieces):
        key_start = extension.rfind(" ", 0, eq) + 1
        key = extension[key_start:eq]
        assert re.fullmatch(r"[A-Za-z0-9_]+", key), f"bad CEF key {key!r}"
        if index + 1 < len(pieces):
            next_eq = pieces[index + 1][1]
            end = extension.rfind(" ", 0, next_eq)
        else:
            end = len(extension)
        raw = extension[eq + 1 : end]
        assert key not in pairs, f"CEF key {key} twice"
        pairs[key] = _cef_unescape(raw)
    return header, pairs


def _cef_unescape(raw: str) -> str:
    out = []
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            following = raw[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(following, following))
            assert following in "\\=nr", f"unknown CEF escape \\{following}"
            i += 2
        else:
            assert raw[i] not in "\r\n=", f"raw {raw[i]!r} in a CEF value"
            out.append(raw[i])
            i += 1
    return "".join(out)


# -- helpers ------------------------------------------------------------------------------

AWKWARD = st.sampled_from(['"', "\\", "]", "[", "=", "|", "\n", "\r", "\x00", " ", "é", "€"])
VALUES = st.one_of(
    st.text(),
    st.text(alphabet=st.one_of(AWKWARD, st.characters()), max_size=50),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True).filter(
    lambda n: n not in {"event_id", "kind", "shim_id"}
)
FIELDS = st.dictionaries(NAMES, VALUES, max_size=8)


def event(kind: str = "session_meta", **fields: Any) -> Event:
    base: dict[str, Any] = {"session_id": "s-1"} if kind == "session_meta" else {}
    return make_event(kind, event_id=ID, at=AT, shim_id="shim-1", fields=base | fields)


def expected_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def check_params(params: dict[str, str], fields: dict[str, Any]) -> None:
    wanted = {k: v for k, v in fields.items() if v is not None}
    assert set(params) - {"event_id", "kind", "shim_id"} == set(wanted)
    for name, value in wanted.items():
        if isinstance(value, float):
            assert float(params[name]) == value
        else:
            assert params[name] == expected_text(value)


def epoch(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# -- the parsers catch what they look for ---------------------------------------------------


def test_the_rfc5424_parser_reads_the_rfcs_own_example() -> None:
    # RFC 5424 §6.5, example 3.
    line = (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        b"An application event log entry..."
    )
    parsed = parse_syslog(line)
    assert (parsed.pri, parsed.hostname, parsed.app, parsed.procid) == (
        165,
        "mymachine.example.com",
        "evntslog",
        "-",
    )
    assert parsed.sd == [
        ("exampleSDID@32473", [("iut", "3"), ("eventSource", "Application"), ("eventID", "1011")])
    ]
    assert parsed.msg == b"An application event log entry..."


@pytest.mark.parametrize(
    "line",
    [
        b"<192>1 - h a p m -",  # PRI out of range
        b"<13>1 2003-13-11T22:14:15Z h a p m -",  # no 13th month
        b'<13>1 - h a p m [x@1 a="]"]',  # unescaped ']'
        b'<13>1 - h a p m [x@1 a b="c"]',  # PARAM-NAME without a value
        b'<13>1 - h a p m [x@1 a="c"',  # element not closed
        b"<13>1 - h a p " + b"m" * 33 + b" -",  # MSGID longer than 32
        b"<13>1 - h\xc3\xa9 a p m -",  # HOSTNAME not US-ASCII
        b'<13>1 - h a p m [x@1 a="\xff"]',  # PARAM-VALUE not UTF-8
        b"<13>1 - h a p m -junk",
    ],
)
def test_the_rfc5424_parser_refuses_malformed_lines(line: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_syslog(line)


def test_the_cef_parser_reads_the_specs_example() -> None:
    header, ext = parse_cef(
        "CEF:0|security|threatmanager|1.0|100|detected a \\| in message|10|"
        "src=10.0.0.1 act=blocked a \\= dst=1.1.1.1"
    )
    assert header[5] == "detected a | in message"
    assert ext == {"src": "10.0.0.1", "act": "blocked a =", "dst": "1.1.1.1"}


# -- the catalogue ------------------------------------------------------------------------

BRIEF_KINDS = {
    "auth_success",
    "auth_failure",
    "session_start",
    "session_end",
    "tamper",
    "sensor_fault",
    "latch_reset",
    "storage_exhausted",
    "storage_alert",
    "config_loaded",
    "heartbeat",
    "outbox_filling",
}


def test_the_catalogue_has_every_kind_and_only_heartbeats_are_not_security_events() -> None:
    assert BRIEF_KINDS <= set(CATALOGUE)
    assert {name for name, kind in CATALOGUE.items() if not kind.security} == {"heartbeat"}
    for name, kind in CATALOGUE.items():
        assert kind.name == name
        assert 0 <= kind.severity <= 7
        assert len(name) <= 32 and re.fullmatch(r"[a-z_]+", name)
    assert CATALOGUE["tamper"].severity < CATALOGUE["auth_failure"].severity  # more severe


def test_auth_failure_needs_technician_result_and_detail() -> None:
    for missing in ("technician_id", "result", "detail"):
        fields = {"technician_id": "a", "result": "BAD_CODE", "detail": "x"}
        del fields[missing]
        with pytest.raises(ValueError, match=missing):
            make_event("auth_failure", event_id=ID, at=AT, shim_id="s", fields=fields)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "no_such_kind"},
        {"event_id": ""},
        {"event_id": "has space"},
        {"at": math.nan},
        {"at": math.inf},
        {"at": "1700000000"},
        {"severity": 8},
        {"severity": True},
        {"security": False},  # a tamper event is a security event
        {"fields": {"Bad": 1}},
        {"fields": {"a" * 33: 1}},
        {"fields": {"kind": "x"}},
        {"fields": {"x": math.nan}},
        {"fields": {"x": [1]}},
        {"fields": {"x": b"bytes"}},
        {"fields": ["x"]},
    ],
)
def test_a_bad_event_is_refused_with_a_value_error(change: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "event_id": ID,
        "kind": "tamper",
        "at": AT,
        "shim_id": "s",
        "severity": 1,
        "fields": {},
        "security": True,
    }
    with pytest.raises(ValueError):
        Event(**(args | change))


def test_long_text_is_cut_and_the_event_is_immutable() -> None:
    made = event(note="x" * 10_000)
    assert len(str(made.fields["note"])) <= 2048
    with pytest.raises(TypeError):
        made.fields["note"] = "changed"  # type: ignore[index]
    with pytest.raises(AttributeError):
        made.kind = "tamper"  # type: ignore[misc]


def test_event_ids_are_32_hex_digits_ordered_by_time() -> None:
    first = new_event_id(AT, bytes(10))
    later = new_event_id(AT + 0.002, bytes(10))
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first < later
    assert new_event_id(AT, bytes(10)) != new_event_id(AT, bytes(9) + b"\x01")
    with pytest.raises(ValueError):
        new_event_id(AT, bytes(6))


# -- RFC 5424 -----------------------------------------------------------------------------


def test_an_auth_failure_renders_as_the_rfc_says() -> None:
    made = make_event(
        "auth_failure",
        event_id=ID,
        at=AT,
        shim_id="shim-empump-001",
        fields={"technician_id": 'eve"]\\', "result": "BAD_CODE", "detail": "wrong code"},
    )
    parsed = parse_syslog(rfc5424(made, "shim-host", procid=4242))
    assert parsed.pri == 13 * 8 + 4  # log audit, warning
    assert parsed.version == 1
    assert parsed.timestamp == "2023-11-14T22:13:20.123456Z"
    assert (parsed.hostname, parsed.app, parsed.procid, parsed.msgid) == (
        "shim-host",
        "shimmfa",
        "4242",
        "auth_failure",
    )
    ((sd_id, params),) = parsed.sd
    assert sd_id == "shimmfa@32473"
    assert dict(params) == {
        "event_id": ID,
        "kind": "auth_failure",
        "shim_id": "shim-empump-001",
        "technician_id": 'eve"]\\',
        "result": "BAD_CODE",
        "detail": "wrong code",
    }
    assert parsed.msg.isascii() and b"BAD_CODE" in parsed.msg


def test_header_fields_are_cut_to_the_rfc_limits_and_empty_ones_are_nil() -> None:
    parsed = parse_syslog(rfc5424(event(), "h" * 300, app="a" * 60, procid="p" * 200))
    assert (len(parsed.hostname), len(parsed.app), len(parsed.procid)) == (255, 48, 128)
    parsed = parse_syslog(rfc5424(event(), "", app="", procid=""))
    assert (parsed.hostname, parsed.app, parsed.procid) == ("-", "-", "-")
    parsed = parse_syslog(rfc5424(event(), "bad host\n\xe9"))
    assert " " not in parsed.hostname


def test_a_time_beyond_year_9999_is_the_nil_timestamp() -> None:
    far = make_event("heartbeat", event_id=ID, at=1e15, shim_id="s")
    assert parse_syslog(rfc5424(far, "h")).timestamp == "-"
    assert to_json(far)["time"] is None


@settings(max_examples=300)
@given(
    fields=FIELDS,
    shim_id=st.text(),
    hostname=st.text(),
    procid=st.one_of(st.text(), st.integers()),
    at=st.floats(min_value=0, max_value=4e9),
    kind=st.sampled_from(sorted(CATALOGUE)),
)
def test_any_field_values_render_to_a_valid_rfc5424_line_whose_sd_reads_back(
    fields: dict[str, Any], shim_id: str, hostname: str, procid: str | int, at: float, kind: str
) -> None:
    fields = {name: "x" for name in CATALOGUE[kind].required} | fields
    made = make_event(kind, event_id=ID, at=at, shim_id=shim_id, fields=fields)
    parsed = parse_syslog(rfc5424(made, hostname, procid=procid))
    assert parsed.pri == 13 * 8 + CATALOGUE[kind].severity
    assert parsed.msgid == kind
    assert abs(epoch(parsed.timestamp) - at) <= 1e-6 + 1e-9 * at
    ((sd_id, params),) = parsed.sd
    assert sd_id == "shimmfa@32473"
    names = [name for name, _ in params]
    assert len(names) == len(set(names))
    as_dict = dict(params)
    assert (as_dict["event_id"], as_dict["kind"], as_dict["shim_id"]) == (ID, kind, shim_id)
    check_params(as_dict, dict(made.fields))
    assert parsed.msg.isascii() and b"\n" not in parsed.msg


@given(st.text(alphabet=st.characters(categories=["Cs"]), min_size=1))
def test_lone_surrogates_render_to_valid_utf8_without_an_exception(text: str) -> None:
    made = event(note=text, technician_id=text)
    line = rfc5424(made, text, app=text, procid=text)
    parse_syslog(line)  # valid UTF-8 in every PARAM-VALUE
    parse_cef(parse_syslog(cef(made, text)).msg.decode("utf-8"))


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_messages_octet_framed_back_to_back_split_back_apart(messages: list[bytes]) -> None:
    messages = [m for m in messages if m]
    assert unframe(b"".join(octet_frame(m) for m in messages)) == messages


def test_octet_frame_is_the_length_a_space_and_the_message() -> None:
    assert octet_frame(b"<13>1 - - - - - -") == b"17 <13>1 - - - - - -"
    assert octet_frame("é".encode()) == b"2 \xc3\xa9"  # bytes, not characters


# -- CEF ----------------------------------------------------------------------------------


def test_cef_severity_covers_0_to_10_and_falls_as_syslog_severity_rises() -> None:
    values = [cef_severity(s) for s in range(8)]
    assert values[0] == 10 and values[-1] == 0
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == 8


@settings(max_examples=300)
@given(fields=FIELDS, shim_id=st.text(), kind=st.sampled_from(sorted(CATALOGUE)))
def test_any_field_values_render_to_a_valid_cef_line_that_reads_back(
    fields: dict[str, Any], shim_id: str, kind: str
) -> None:
    fields = {name: "x" for name in CATALOGUE[kind].required} | fields
    made = make_event(kind, event_id=ID, at=AT, shim_id=shim_id, fields=fields)
    line = cef(made, "shim-host", version="1.2|3")
    parsed = parse_syslog(line)
    assert parsed.sd == [] and parsed.msgid == kind
    text = parsed.msg.decode("utf-8")
    assert text == cef_message(made, "1.2|3")
    header, ext = parse_cef(text)
    assert header == [
        "CEF:0",
        "shimmfa",
        "shimmfa",
        "1.2|3",
        kind,
        CATALOGUE[kind].title,
        str(cef_severity(CATALOGUE[kind].severity)),
    ]
    assert ext["externalId"] == ID and ext["dvchost"] == shim_id
    assert int(ext["rt"]) == round(AT * 1000)
    ours = {k.removeprefix("shimmfa_"): v for k, v in ext.items() if k.startswith("shimmfa_")}
    check_params(ours, dict(made.fields))


# -- JSON ---------------------------------------------------------------------------------


@given(fields=FIELDS, shim_id=st.text(), at=st.floats(min_value=-1e12, max_value=1e12))
def test_any_event_survives_json_text_and_back(
    fields: dict[str, Any], shim_id: str, at: float
) -> None:
    made = make_event("heartbeat", event_id=ID, at=at, shim_id=shim_id, fields=fields)
    text = json.dumps(to_json(made), allow_nan=False, sort_keys=True)
    assert from_json(json.loads(text)) == made


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(JSONISH, st.dictionaries(st.sampled_from(["kind", "at", "fields", "severity"]), JSONISH))
def test_any_malformed_json_is_a_value_error_never_another_exception(
    junk: Any, change: dict[str, Any]
) -> None:
    good = to_json(event())
    for candidate in (junk, good | change):
        try:
            from_json(candidate)
        except ValueError:
            pass


def test_an_event_delivered_after_an_outage_is_marked_late_with_id_and_fields_kept() -> None:
    from shimmfa.core.events import marked_late

    event = make_event(
        "heartbeat", event_id="hb-1", at=1_000.0, shim_id="shim-1", fields={"seq": 7}
    )
    assert marked_late(event, 1_000.0 + 120.0) is event  # on time: unchanged
    late = marked_late(event, 1_000.0 + 600.0)
    assert late.event_id == event.event_id and late.at == event.at
    assert late.fields == {"seq": 7, "late": True, "delivered_after_s": 600.0}
    assert marked_late(late, 1_000.0 + 900.0) is late  # marked once


# -- heartbeats keep their wire form ------------------------------------------------------

HB_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HB_SHIM = "shim-empump-001"


def signed_heartbeat(**changes: Any) -> dict[str, Any]:
    body = heartbeat_payload(
        shim_id=HB_SHIM,
        hardware_id="hw-1",
        seq=7,
        boot_count=3,
        uptime_s=12.5,
        sent_at=1_795_431_299.25,
        state="ok",
        open_session=None,
        config_sha256="a" * 64,
        software_sha256="b" * 64,
    )
    return sign_heartbeat({**body, **changes}, HB_KEY.sign)


def heartbeat_event(wire: dict[str, Any]) -> Event:
    summary = {name: wire["payload"][name] for name in ("seq", "boot_count", "state")}
    return make_event(
        "heartbeat", event_id=ID, at=1_795_431_299.25, shim_id=HB_SHIM, fields=summary,
        heartbeat=wire,
    )  # fmt: skip


def hb_keys() -> dict[str, bytes]:
    return {HB_SHIM: HB_KEY.public_key().public_bytes_raw()}


@pytest.mark.parametrize("session", [None, "20261123T105459.123Z-3f9a1c2b5d7e"])
def test_a_heartbeat_events_json_carries_the_wire_form_that_verifies_as_it_stands(
    session: str | None,
) -> None:
    wire = signed_heartbeat(open_session=session)
    text = json.dumps(to_json(marked_late(heartbeat_event(wire), 1e10)), allow_nan=False)
    received = json.loads(text)
    assert received["heartbeat"] == wire
    assert verify_heartbeat(received["heartbeat"], hb_keys(), {}).seq == 7
    assert from_json(received).heartbeat == wire


def test_a_heartbeats_syslog_parameters_rebuild_the_wire_form_that_verifies() -> None:
    wire = signed_heartbeat(uptime_s=60.0)
    line = parse_syslog(rfc5424(heartbeat_event(wire), "host"))
    ((sd_id, params),) = line.sd
    assert sd_id == "shimmfa@32473"
    rebuilt = heartbeat_from_params(dict(params))
    assert rebuilt == wire
    assert verify_heartbeat(rebuilt, hb_keys(), {}).uptime_s == 60.0
    assert "open_session" not in dict(params)


def test_an_altered_syslog_parameter_does_not_verify() -> None:
    line = parse_syslog(rfc5424(heartbeat_event(signed_heartbeat()), "host"))
    params = dict(line.sd[0][1]) | {"seq": "8"}
    with pytest.raises(HeartbeatError, match="bad signature"):
        verify_heartbeat(heartbeat_from_params(params), hb_keys(), {})
    with pytest.raises(HeartbeatError, match="malformed"):
        heartbeat_from_params({k: v for k, v in params.items() if k != "sig"})


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "tamper"},
        {"shim_id": "another-shim"},
        {"heartbeat": {"payload": {}, "sig": ""}},
        {"heartbeat": "not a mapping"},
    ],
)
def test_a_heartbeat_that_does_not_fit_its_event_is_refused(change: dict[str, Any]) -> None:
    data = to_json(heartbeat_event(signed_heartbeat())) | change
    with pytest.raises(ValueError):
        from_json(data)


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("123456", "<redacted: 6 digits>"),
        ("12345678", "<redacted: 8 digits>"),
        ("alice@example.org", "alice@example.org"),
        ("alice123456", "alice123456"),
        ("１２３４５６", "１２３４５６"),  # full-width digits are no code: shown as typed
        ("", ""),
    ],
)
def test_an_id_that_is_only_digits_is_shown_redacted(typed: str, shown: str) -> None:
    from shimmfa.core.events import shown_id

    assert shown_id(typed) == shown
