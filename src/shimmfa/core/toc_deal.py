"""Dealing Tocs: one group as farMFA does, or several groups ANDed ("2 of
clinical engineering AND 1 of information security"); and combining an AND
deal back.

Rules of this module:

- `deal`: one group, farMFA's deal. A fresh group_id; the secret text and
  the group_id text each split threshold-of-n (`core/shamir.py`); one Toc
  per player, in the players' order. Refusals are `DealError`s with
  farMFA's dealer messages ("threshold cannot be lower than 2", "threshold
  cannot be higher than the number of players", "invalid TOTP secret: ...").
- `deal_groups`, the AND of k groups, in two steps:
  1. All-of-k: the secret text is split into k pieces by adding base32
     symbols modulo 32. Pieces 1..k-1 are uniformly random base32 texts of
     the secret's length (one random byte, masked to 5 bits, per symbol: 256
     is a multiple of 32, so no bias), `=` padding kept; piece k is the
     secret minus the others, symbol by symbol. Any k-1 pieces are uniform
     and independent of the secret (a one-time pad over Z/32); all k added,
     in any order, give it back.
  2. Each group deals its piece under a group_id of its own: threshold >= 2
     is a farMFA deal of the piece; threshold 1 gives clear Tocs: each
     player's Toc holds the piece itself (share = piece + x tag, toc_id =
     group_id + x tag, i.e. shares of constant polynomials, the mark that
     `Toc.clear` reads), saying group_threshold 2 and group_size
     max(players, 2), the least farMFA accepts.
  A player name (when names are given) may be in one group only: one
  person holding two groups' pieces would undo the AND.
  Every Toc of an AND deal is therefore a valid farMFA Toc, and one group's
  Tocs alone combine (here, or in farMFA's oracle) to a valid base32 text
  that is not the secret: a TOTP code made from it opens nothing.
- `combine_groups(tocs, groups)` takes the dealt record, one `TocGroup` per
  group (`tocs[0].group` of each dealt group; record it at dealing): every
  group must reach its quorum (`combine_tocs` checks each group), then the
  pieces are added. A Toc of a group outside the record is WRONG_GROUP; a
  group without Tocs is TOO_FEW. Without the record nothing can tell that a
  group is missing, so there is no combine without it.
- k = 1 is a plain deal: the one piece is the secret (and needs threshold
  >= 2). A deal has at most 16 groups; its group_ids are distinct.
- Randomness is the `randbytes` argument; nothing here does I/O. Secret
  symbols are mapped to and from 0..31 by arithmetic, not a table lookup.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from shimmfa.core import shamir
from shimmfa.core.toc import (
    Toc,
    TocGroup,
    TocRejection,
    combine_tocs,
    note_problem,
    secret_text_problem,
)
from shimmfa.errors import DealError, TocError

__all__ = [
    "MAX_GROUPS",
    "combine_groups",
    "deal",
    "deal_groups",
    "new_group_id",
    "player_count",
]

MAX_GROUPS = 16
MAX_GROUP_NAME = 64


def deal(
    secret_text: str,
    players: Sequence[str] | int,
    threshold: int,
    *,
    note: str = "",
    randbytes: Callable[[int], bytes],
) -> list[Toc]:
    """One Toc per player (in order); any `threshold` of them release the secret."""
    problem = secret_text_problem(secret_text)
    if problem:
        raise DealError(f"invalid TOTP secret: {problem}")
    count = player_count(players)
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise DealError(f"threshold must be an integer, not {type(threshold).__name__}")
    if threshold < 2:
        raise DealError("threshold cannot be lower than 2")
    if threshold > count:
        raise DealError("threshold cannot be higher than the number of players")
    problem = note_problem(note)
    if problem:
        raise DealError(problem)
    return _deal_shamir(secret_text, new_group_id(randbytes), count, threshold, note, randbytes)


def player_count(players: object, where: str = "") -> int:
    """How many players `players` names (a list of unique names, or a count
    1..255); `where` ends the error message, e.g. " in group clinical"."""
    if isinstance(players, int) and not isinstance(players, bool):
        count = players
    elif isinstance(players, Sequence) and not isinstance(players, str | bytes):
        if not all(isinstance(name, str) and name for name in players):
            raise DealError(f"every player{where} needs a name (a non-empty string)")
        if len(set(players)) != len(players):
            raise DealError(f"player names{where} must be unique")
        count = len(players)
    else:
        raise DealError(f"players{where} must be a list of names or a count")
    if not 1 <= count <= shamir.MAX_PARTS:
        raise DealError(f"the number of players{where} must be 1 to {shamir.MAX_PARTS}")
    return count


def new_group_id(randbytes: Callable[[int], bytes]) -> str:
    """A fresh group_id: base32 of 5 random bytes (8 characters)."""
    raw = randbytes(5)
    if not isinstance(raw, bytes) or len(raw) != 5:
        raise DealError("randbytes(5) must return 5 bytes; check the random source")
    return base64.b32encode(raw).decode("ascii")


def _deal_shamir(
    secret: str,
    group_id: str,
    count: int,
    threshold: int,
    note: str,
    randbytes: Callable[[int], bytes],
) -> list[Toc]:
    shares = shamir.split(secret.encode("ascii"), count, threshold, randbytes)
    toc_ids = shamir.split(group_id.encode("ascii"), count, threshold, randbytes)
    return [
        Toc(group_id, count, threshold, note, share, toc_id)
        for share, toc_id in zip(shares, toc_ids, strict=True)
    ]


# -- AND across groups ------------------------------------------------------------------------


def deal_groups(
    secret_text: str,
    groups: Mapping[str, tuple[Sequence[str] | int, int]],
    *,
    note: str = "",
    randbytes: Callable[[int], bytes],
) -> dict[str, list[Toc]]:
    """Tocs per group name: the secret needs every group's threshold of its Tocs.

    `groups` maps a group name to (players, threshold), players being names
    or a count; a threshold of 1 is allowed when there are several groups."""
    problem = secret_text_problem(secret_text)
    if problem:
        raise DealError(f"invalid TOTP secret: {problem}")
    problem = note_problem(note)
    if problem:
        raise DealError(problem)
    specs = _group_specs(groups)
    pieces = _pieces(secret_text, len(specs), randbytes)
    group_ids: list[str] = []
    while len(group_ids) < len(specs):
        group_id = new_group_id(randbytes)
        if group_id not in group_ids:
            group_ids.append(group_id)
    dealt = {}
    for (name, count, threshold), piece, group_id in zip(specs, pieces, group_ids, strict=True):
        if threshold == 1:
            dealt[name] = _deal_clear(piece, group_id, count, note, randbytes)
        else:
            dealt[name] = _deal_shamir(piece, group_id, count, threshold, note, randbytes)
    return dealt


def _group_specs(groups: object) -> list[tuple[str, int, int]]:
    if not isinstance(groups, Mapping) or not groups:
        raise DealError("give at least one group: a name and (players, threshold)")
    if len(groups) > MAX_GROUPS:
        raise DealError(f"a deal has at most {MAX_GROUPS} groups, not {len(groups)}")
    specs = []
    members: dict[str, str] = {}
    for name, spec in groups.items():
        if (
            not isinstance(name, str)
            or not 1 <= len(name) <= MAX_GROUP_NAME
            or not name.isprintable()
            or any(char.isspace() for char in name)
        ):
            raise DealError(
                f"a group name is 1 to {MAX_GROUP_NAME} printable characters without spaces"
            )
        where = f" in group {name}"
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise DealError(f"group {name}: give (players, threshold)")
        count = player_count(spec[0], where)
        for player in spec[0] if not isinstance(spec[0], int) else ():
            if player in members:
                raise DealError(
                    f"player {player[:64]!r} is in groups {members[player]} and {name}: "
                    "one person would count for both"
                )
            members[player] = name
        threshold = spec[1]
        if not isinstance(threshold, int) or isinstance(threshold, bool):
            raise DealError(f"threshold{where} must be an integer")
        lowest = 2 if len(groups) == 1 else 1
        if threshold < lowest:
            raise DealError(f"threshold cannot be lower than {lowest}{where}")
        if threshold > count:
            raise DealError(f"threshold cannot be higher than the number of players{where}")
        specs.append((name, count, threshold))
    return specs


def _pieces(secret: str, k: int, randbytes: Callable[[int], bytes]) -> list[str]:
    """k base32 texts whose symbols add up, modulo 32, to the secret's."""
    body = secret.rstrip("=")
    padding = secret[len(body) :]
    rest = [_symbol_value(char) for char in body]
    pieces = []
    for _ in range(k - 1):
        raw = randbytes(len(body))
        if not isinstance(raw, bytes) or len(raw) != len(body):
            raise DealError(f"randbytes({len(body)}) must return {len(body)} bytes")
        piece = [byte & 31 for byte in raw]
        rest = [(value - drawn) % 32 for value, drawn in zip(rest, piece, strict=True)]
        pieces.append(piece)
    pieces.append(rest)
    return ["".join(_symbol(value) for value in piece) + padding for piece in pieces]


def _deal_clear(
    piece: str, group_id: str, count: int, note: str, randbytes: Callable[[int], bytes]
) -> list[Toc]:
    share_tags = shamir.random_x_tags(count, randbytes)
    id_tags = shamir.random_x_tags(count, randbytes)
    return [
        Toc(
            group_id,
            max(count, 2),
            2,
            note,
            piece.encode("ascii") + bytes([share_tag]),
            group_id.encode("ascii") + bytes([id_tag]),
        )
        for share_tag, id_tag in zip(share_tags, id_tags, strict=True)
    ]


def combine_groups(tocs: Iterable[Toc], groups: Collection[TocGroup]) -> str:
    """The secret of an AND deal, from a quorum of every group in `groups`
    (the dealt record). Raises `TocError` whose `reason` says what is wrong."""
    groups = list(groups)
    if not groups or not all(isinstance(group, TocGroup) for group in groups):
        raise TocError("give the dealt record: one TocGroup per group", TocRejection.MALFORMED)
    by_id: dict[str, list[Toc]] = {group.group_id: [] for group in groups}
    if len(by_id) != len(groups):
        raise TocError("the dealt record names a group twice", TocRejection.MALFORMED)
    for toc in tocs:
        if not isinstance(toc, Toc):
            raise TocError(f"expected a Toc, not {type(toc).__name__}", TocRejection.MALFORMED)
        if toc.group_id not in by_id:
            raise TocError(
                f"a Toc of group {toc.group_id}, which is not in this deal",
                TocRejection.WRONG_GROUP,
            )
        by_id[toc.group_id].append(toc)
    pieces = []
    for group in groups:
        if not by_id[group.group_id]:
            raise TocError(
                f"no Tocs of group {group.group_id}: the secret needs a quorum of every group",
                TocRejection.TOO_FEW,
            )
        pieces.append(combine_tocs(by_id[group.group_id], group))
    return _added(pieces)


def _added(pieces: list[str]) -> str:
    """The pieces' symbols added modulo 32 (their `=` padding must agree)."""
    if len({len(piece) for piece in pieces}) != 1 or len({p.count("=") for p in pieces}) != 1:
        raise TocError("the groups' pieces differ in length", TocRejection.MISMATCH)
    padding = "=" * pieces[0].count("=")
    bodies = [piece.rstrip("=") for piece in pieces]
    total = [
        sum(_symbol_value(char) for char in symbols) % 32 for symbols in zip(*bodies, strict=True)
    ]
    return "".join(_symbol(value) for value in total) + padding


def _symbol_value(char: str) -> int:
    """A-Z -> 0..25, 2-7 -> 26..31 by arithmetic (bit 6 is set for letters
    only), so no table is indexed by a secret symbol."""
    code = ord(char)
    return code - 24 - 41 * ((code >> 6) & 1)


def _symbol(value: int) -> str:
    """0..31 -> the base32 symbol; `(value + 6) >> 5` is 1 exactly from 26."""
    return chr(value + 65 - 41 * (((value + 6) >> 5) & 1))
