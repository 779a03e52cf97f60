"""The farMFA Toc: one holder's Shamir share of a TOTP secret, its JSON form
and validation, and the oracle's side of one group: admitting each Toc and
combining a quorum. Dealing is `core/toc_deal.py`.

Rules of this module:

- JSON: exactly the keys `group_id, group_size, group_threshold, note,
  share, toc_id`. `Toc.to_json()` writes them in that order, compact, with
  the escapes Go's encoding/json uses (farMFA is Go), so a farMFA Toc read
  and written again is the same text. `parse_toc` accepts any key order, as
  farMFA does.
- `group_id`: 8 characters of base32 (`A-Z2-7`), made from 5 random bytes.
  `group_size` 2..255, `group_threshold` 2..group_size, both JSON integers
  (not booleans, not 2.0). `note`: free text up to 1024 characters.
  `share` and `toc_id`: canonical standard base64 with padding of
  Vault-format shares (`core/shamir.py`): `share` splits the secret TEXT
  (a 32-character secret gives 33 bytes), `toc_id` splits the group_id text
  (always 9 bytes). Neither has x tag 0.
- What one Toc alone can prove is its shape: every rule above. Whether its
  share belongs to the group cannot be seen in one Toc (a share of a
  polynomial of degree >= 1 is uniformly random); `combine_tocs` checks it
  for a set: same group, no repeated share x tag (duplicates are found by
  share, not by ciphertext or bytes), at least the quorum, and toc_ids that
  combine to the group_id, which is what catches fewer Tocs than the real
  threshold and Tocs of different deals. A share altered in place is caught
  only if the result is not base32; the secret is checked to be base32.
- A clear Toc (`Toc.clear`) holds its group's piece itself: the 1-of-n
  group of an AND deal (`core/toc_deal.py` says why and how). Its share
  and toc_id are shares of constant polynomials, so the toc_id's y bytes are
  the group_id text: that is the mark (a farMFA toc_id shows it with
  probability 2^-64). It says `group_threshold` 2; its quorum is one.
- `check_admissible` is what an oracle runs on each submitted Toc; its
  `TocGroup` argument comes from the dealt record when there is one, so the
  threshold never comes from the applicant alone.
- Every refusal is a `TocError` whose `reason` is a `TocRejection`. No
  message or repr contains share bytes or the secret (a share is hidden from
  `repr`). Nothing here draws randomness or does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shimmfa.core import shamir
from shimmfa.errors import TocError

__all__ = [
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
]

FIELDS = ("group_id", "group_size", "group_threshold", "note", "share", "toc_id")
GROUP_ID_CHARS = 8
MAX_SECRET_CHARS = 256
MAX_NOTE_CHARS = 1024
MAX_TOC_CHARS = 8192
_GROUP_ID = re.compile(r"[A-Z2-7]{8}")
_BASE32 = re.compile(r"[A-Z2-7]*=*")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# what Go's encoding/json escapes beyond what json.dumps(ensure_ascii=False) does
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


class TocRejection(StrEnum):
    """Why a Toc or a set of Tocs was refused (`TocError.reason`)."""

    MALFORMED = "malformed"  # not a Toc: shape, types, ranges, encoding
    WRONG_GROUP = "wrong_group"  # another group, size or threshold
    DUPLICATE = "duplicate"  # a share x tag already given
    TOO_FEW = "too_few"  # fewer Tocs than the group's quorum, or a group missing
    MISMATCH = "mismatch"  # the Tocs do not combine: mixed deals or altered Tocs


@dataclass(frozen=True, slots=True)
class TocGroup:
    """What every Toc of one dealt group shares; an oracle compares it with the
    group recorded at dealing. `quorum`: how many Tocs release the group."""

    group_id: str
    group_size: int
    group_threshold: int
    clear: bool = False

    @property
    def quorum(self) -> int:
        return 1 if self.clear else self.group_threshold


@dataclass(frozen=True, slots=True)
class Toc:
    """One Toc; constructing it validates every field (see the module rules)."""

    group_id: str
    group_size: int
    group_threshold: int
    note: str
    share: bytes = field(repr=False)
    toc_id: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.group_id, str) or not _GROUP_ID.fullmatch(self.group_id):
            raise _malformed("group_id must be 8 base32 characters (A-Z, 2-7)")
        _check_int("group_size", self.group_size, 2, shamir.MAX_PARTS)
        _check_int("group_threshold", self.group_threshold, 2, self.group_size)
        problem = note_problem(self.note)
        if problem:
            raise _malformed(problem)
        _check_share("share", self.share, 2, MAX_SECRET_CHARS + 1)
        _check_share("toc_id", self.toc_id, GROUP_ID_CHARS + 1, GROUP_ID_CHARS + 1)
        if self.clear and self.group_threshold != 2:
            raise _malformed("a clear Toc (toc_id holds the group_id itself) says threshold 2")

    @property
    def x_tag(self) -> int:
        """The share's x tag: what tells two Tocs of one group apart."""
        return self.share[-1]

    @property
    def clear(self) -> bool:
        """True for a Toc that holds its group's piece itself (1-of-n)."""
        return hmac.compare_digest(self.toc_id[:-1], self.group_id.encode("ascii"))

    @property
    def group(self) -> TocGroup:
        return TocGroup(self.group_id, self.group_size, self.group_threshold, self.clear)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object, keys in farMFA's order, shares as base64 text."""
        return {
            "group_id": self.group_id,
            "group_size": self.group_size,
            "group_threshold": self.group_threshold,
            "note": self.note,
            "share": base64.b64encode(self.share).decode("ascii"),
            "toc_id": base64.b64encode(self.toc_id).decode("ascii"),
        }

    def to_json(self) -> str:
        text = json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)
        for char, escape in _GO_ESCAPES.items():  # only the note can hold these
            text = text.replace(char, escape)
        return text


# -- parsing ----------------------------------------------------------------------------------


def parse_toc(data: str | bytes | Mapping[str, Any]) -> Toc:
    """A Toc from its JSON text (str or UTF-8 bytes) or a decoded JSON object.

    Raises only `TocError` (reason MALFORMED), whatever the input."""
    obj = _load(data)
    if not isinstance(obj, Mapping):
        raise _malformed(f"a Toc is a JSON object, not {type(obj).__name__}")
    if not all(isinstance(key, str) for key in obj):
        raise _malformed("every key of a Toc is a string")
    missing = [name for name in FIELDS if name not in obj]
    if missing:
        raise _malformed(f"missing key(s): {', '.join(missing)}")
    extra = sorted(key for key in obj if key not in FIELDS)
    if extra:
        shown = ", ".join(repr(key[:40]) for key in extra[:5])
        raise _malformed(f"unknown key(s): {shown}; a Toc has exactly {', '.join(FIELDS)}")
    return Toc(
        group_id=obj["group_id"],
        group_size=obj["group_size"],
        group_threshold=obj["group_threshold"],
        note=obj["note"],
        share=_base64(obj["share"], "share"),
        toc_id=_base64(obj["toc_id"], "toc_id"),
    )


def _load(data: object) -> Any:
    if isinstance(data, Mapping):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > MAX_TOC_CHARS:
            raise _malformed(f"longer than {MAX_TOC_CHARS} bytes")
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("not UTF-8 text") from None
    if not isinstance(data, str):
        raise _malformed(f"expected JSON text, bytes or a mapping, not {type(data).__name__}")
    if len(data) > MAX_TOC_CHARS:
        raise _malformed(f"longer than {MAX_TOC_CHARS} characters")
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except TocError:
        raise
    except (ValueError, RecursionError):
        raise _malformed("not valid JSON") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _malformed(f"key {key[:40]!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _malformed(f"{name} is not a JSON number")


def _base64(value: object, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_TOC_CHARS:
        raise _malformed(f"{name} must be base64 text")
    if not _BASE64.fullmatch(value):
        raise _malformed(f"{name} must be standard base64 with padding (A-Z a-z 0-9 + / =)")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{name} is not valid base64") from None
    if base64.b64encode(decoded).decode("ascii") != value:
        raise _malformed(f"{name} is not canonical base64 (stray bits in its last character)")
    return decoded


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(f"{name} must be a JSON integer, not {type(value).__name__}")
    if not low <= value <= high:
        shown = value if abs(value) < 10**9 else "that"  # str() of a huge int raises
        raise _malformed(f"{name} must be {low} to {high}, not {shown}")


def _check_share(name: str, value: object, shortest: int, longest: int) -> None:
    if not isinstance(value, bytes):
        raise _malformed(f"{name} must be bytes, not {type(value).__name__}")
    if not shortest <= len(value) <= longest:
        wanted = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
        raise _malformed(f"{name} must be {wanted} bytes, not {len(value)}")
    if value[-1] == 0:
        raise _malformed(f"{name} has x tag 0, which no share has")


def note_problem(note: object) -> str | None:
    """Why `note` cannot be a Toc's note (None if it can)."""
    if not isinstance(note, str):
        return f"note must be a string, not {type(note).__name__}"
    if len(note) > MAX_NOTE_CHARS:
        return f"note must be at most {MAX_NOTE_CHARS} characters, not {len(note)}"
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        return "note must be valid Unicode text (it holds a lone surrogate)"
    return None


def _malformed(message: str) -> TocError:
    return TocError(f"malformed Toc: {message}", TocRejection.MALFORMED)


def secret_text_problem(text: object) -> str | None:
    """Why `text` is not a base32 TOTP secret as dealt (None if it is):
    1..256 characters of `A-Z2-7`, padded with `=` to a multiple of 8 or not
    at all, of a length base32 can have. Never quotes the text."""
    if not isinstance(text, str):
        return f"the secret must be text, not {type(text).__name__}"
    if not 1 <= len(text) <= MAX_SECRET_CHARS:
        return f"the secret must be 1 to {MAX_SECRET_CHARS} characters, not {len(text)}"
    if not _BASE32.fullmatch(text):
        return "the secret must be upper-case base32 (A-Z, 2-7), with no spaces"
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if not body or len(body) % 8 in (1, 3, 6) or padding not in (0, -len(body) % 8):
        return f"the secret's length ({len(body)} characters, {padding} '=') is not base32"
    return None


# -- one group at the oracle, admit and combine -----------------------------------------------


def check_admissible(
    candidate: Toc, accepted: Sequence[Toc], groups: Collection[TocGroup] | None = None
) -> None:
    """Raise `TocError` unless `candidate` may join a session holding `accepted`
    (toc_zero first): its group is one of `groups` (the dealt record) or, with
    no record, toc_zero's; its share x tag is new in its group (DUPLICATE);
    its toc_id x tag is new too and its share as long as the others' (else
    MISMATCH: a forged or foreign Toc)."""
    if not isinstance(candidate, Toc):
        raise _malformed(f"expected a Toc, not {type(candidate).__name__}")
    if groups is None and accepted:
        groups = (accepted[0].group,)
    if groups is not None and candidate.group not in set(groups):
        raise _wrong_group(candidate.group)
    for toc in accepted:
        if toc.group_id == candidate.group_id and toc.x_tag == candidate.x_tag:
            raise TocError(
                f"a Toc with share x tag {toc.x_tag} of group {toc.group_id} was already given",
                TocRejection.DUPLICATE,
            )
        if toc.group_id == candidate.group_id and toc.toc_id[-1] == candidate.toc_id[-1]:
            raise TocError(
                "two Tocs of one group share a toc_id x tag: one was altered or forged",
                TocRejection.MISMATCH,
            )
        if len(toc.share) != len(candidate.share):
            raise TocError(
                f"this Toc's share is {len(candidate.share)} bytes, the others' "
                f"{len(toc.share)}: it was dealt from another secret",
                TocRejection.MISMATCH,
            )


def quorum_reached(accepted: Sequence[Toc], groups: Collection[TocGroup] | None = None) -> bool:
    """True when every group (the dealt record, or toc_zero's) has its quorum."""
    if groups is None:
        groups = (accepted[0].group,) if accepted else ()
    return bool(groups) and all(
        sum(toc.group == group for toc in accepted) >= group.quorum for group in groups
    )


def combine_tocs(tocs: Sequence[Toc], group: TocGroup | None = None) -> str:
    """The secret text one group's Tocs were dealt from (for one group of an
    AND deal: that group's piece, useless alone). `group` is the dealt record;
    without it, the first Toc's group is trusted for size and threshold."""
    tocs = list(tocs)
    if not tocs:
        raise TocError("no Tocs given", TocRejection.TOO_FEW)
    accepted: list[Toc] = []
    for toc in tocs:
        check_admissible(toc, accepted, (group or tocs[0].group,))
        accepted.append(toc)
    expected = group or tocs[0].group
    if len(tocs) < expected.quorum:
        raise TocError(
            f"group {expected.group_id} needs {expected.quorum} Tocs, {len(tocs)} given",
            TocRejection.TOO_FEW,
        )
    if expected.clear:
        pieces = {toc.share[:-1] for toc in tocs}
        if len(pieces) != 1:
            raise TocError("clear Tocs of one group hold different pieces", TocRejection.MISMATCH)
        secret = pieces.pop()
    else:
        group_id = shamir.combine([toc.toc_id for toc in tocs])
        if not hmac.compare_digest(group_id, expected.group_id.encode("ascii")):
            raise TocError(
                f"the toc_ids do not combine to group {expected.group_id}: fewer Tocs than "
                "the real threshold, Tocs of different deals, or an altered Toc",
                TocRejection.MISMATCH,
            )
        secret = shamir.combine([toc.share for toc in tocs])
    return _checked_secret(secret)


def _checked_secret(secret: bytes) -> str:
    text = secret.decode("ascii", errors="replace")
    if secret_text_problem(text):
        raise TocError(
            "the shares do not combine to a base32 TOTP secret: a share was altered",
            TocRejection.MISMATCH,
        )
    return text


def _wrong_group(group: TocGroup) -> TocError:
    return TocError(
        f"a Toc of group {group.group_id} (size {group.group_size}, threshold "
        f"{group.group_threshold}) does not belong to this session's group",
        TocRejection.WRONG_GROUP,
    )
