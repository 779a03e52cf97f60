"""The dealer: a TOTP secret and the holders' age recipients in, the
dealer's JSON out, each Toc sealed to its holder (`shimmfa quorum deal`).

Rules of this module:

- One group, farMFA's deal: `--player NAME=age1... --threshold T`, output
  `{group_id, threshold, size, note, tocs: {NAME: "<armored age>"}}`;
  refusals carry farMFA's dealer messages ("threshold cannot be lower than
  2", "threshold cannot be higher than the number of players", "invalid
  TOTP secret: ...") from `core.toc_deal.deal`.
- AND across groups: `--group clinical:2 --group infosec:1` and players
  named `GROUP/NAME=age1...`: `core.toc_deal.deal_groups` (the secret is
  split all-of-k into pieces, each group deals its piece; a threshold of 1
  gives every holder of that group the piece itself). Output `{groups:
  {NAME: {group_id, threshold, size}}, note, tocs: {GROUP/NAME: ...}}`.
  Every group needs a player; every player a declared group; `--threshold`
  does not go with `--group`.
- One recipient gets one Toc: the same `age1...` twice, in one group or in
  two, is refused (one person would count twice, or for both departments).
- The secret is read from a file or stdin, never from the command line:
  whitespace is dropped and letters upper-cased before it is checked and
  dealt (farMFA splits the secret text as given).
- `dealt_groups(document)` turns a dealer's output into the record an
  oracle's `GroupRegistry` keeps: the Tocs' own `TocGroup`s (a threshold-1
  group's Tocs say threshold 2 and size max(players, 2), as
  `core.toc_deal` deals them).
- Errors are `DealError` (from core) or `QuorumError`; none quotes the secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shimmfa.core.toc import TocGroup
from shimmfa.core.toc_deal import deal, deal_groups
from shimmfa.errors import DealError, QuorumError
from shimmfa.quorum.age_tocs import parse_recipient, seal_toc
from shimmfa.quorum.records import deal_record

__all__ = [
    "PlayerSpec",
    "deal_document",
    "dealt_groups",
    "normalised_secret",
    "parse_group",
    "parse_player",
]

_NAME = re.compile(r"[^\s=/]{1,64}")
_GROUP_SPEC = re.compile(r"([^\s=/:]{1,64}):([0-9]{1,3})")


@dataclass(frozen=True, slots=True)
class PlayerSpec:
    """One `--player [GROUP/]NAME=age1...`."""

    name: str
    group: str | None
    recipient: str

    @property
    def full_name(self) -> str:
        return self.name if self.group is None else f"{self.group}/{self.name}"


def parse_player(spec: str) -> PlayerSpec:
    """`NAME=age1...` or `GROUP/NAME=age1...`."""
    who, sep, recipient = spec.partition("=")
    group, slash, name = who.rpartition("/")
    if not sep or not _NAME.fullmatch(name) or (slash and not _NAME.fullmatch(group)):
        raise DealError(
            f"--player {spec[:80]!r}: write NAME=age1... (or GROUP/NAME=age1... with --group); "
            "a name is 1 to 64 characters without spaces, '=' or '/'"
        )
    try:
        parse_recipient(recipient)
    except QuorumError as exc:
        raise DealError(f"--player {who}: {exc}") from None
    return PlayerSpec(name, group if slash else None, recipient.strip())


def parse_group(spec: str) -> tuple[str, int]:
    """`NAME:THRESHOLD`, e.g. `clinical:2`."""
    match = _GROUP_SPEC.fullmatch(spec)
    if match is None:
        raise DealError(
            f"--group {spec[:80]!r}: write NAME:THRESHOLD, e.g. clinical:2 "
            "(a name is 1 to 64 characters without spaces, '=', '/' or ':')"
        )
    return match.group(1), int(match.group(2))


def normalised_secret(text: str) -> str:
    """The secret as dealt: whitespace dropped, letters upper-cased."""
    return "".join(text.split()).upper()


def deal_document(
    secret_text: str,
    players: Sequence[PlayerSpec],
    *,
    threshold: int | None = None,
    groups: Sequence[tuple[str, int]] = (),
    note: str = "",
    randbytes: Callable[[int], bytes] = os.urandom,
) -> dict[str, Any]:
    """The dealer's JSON document (see the module rules)."""
    if not players:
        raise DealError("give at least two players: --player NAME=age1...")
    _check_recipients(players)
    if not groups:
        if threshold is None:
            raise DealError("give --threshold T (or --group NAME:T for each group)")
        grouped = [player for player in players if player.group is not None]
        if grouped:
            raise DealError(
                f"player {grouped[0].full_name} names a group: declare it with --group "
                f"{grouped[0].group}:T"
            )
        tocs = deal(
            secret_text, [p.name for p in players], threshold, note=note, randbytes=randbytes
        )
        return {
            "group_id": tocs[0].group_id,
            "threshold": threshold,
            "size": len(players),
            "note": note,
            "tocs": {
                p.name: seal_toc(toc, p.recipient) for p, toc in zip(players, tocs, strict=True)
            },
        }
    if threshold is not None:
        raise DealError("--threshold is for one group; with --group give each group's threshold")
    members = _members(players, groups)
    dealt = deal_groups(
        secret_text,
        {name: ([p.full_name for p in members[name]], t) for name, t in groups},
        note=note,
        randbytes=randbytes,
    )
    sealed = {}
    for name, _ in groups:
        for player, toc in zip(members[name], dealt[name], strict=True):
            sealed[player.full_name] = seal_toc(toc, player.recipient)
    return {
        "groups": {
            name: {"group_id": dealt[name][0].group_id, "threshold": t, "size": len(members[name])}
            for name, t in groups
        },
        "note": note,
        "tocs": sealed,
    }


def _check_recipients(players: Sequence[PlayerSpec]) -> None:
    holders: dict[str, PlayerSpec] = {}
    names: set[str] = set()
    for player in players:
        if player.full_name in names:
            raise DealError(f"player {player.full_name} is given twice")
        names.add(player.full_name)
        other = holders.setdefault(player.recipient, player)
        if other is not player:
            both = " and count for two groups" if other.group != player.group else ""
            raise DealError(
                f"players {other.full_name} and {player.full_name} have the same recipient "
                f"{player.recipient}: one person would hold two Tocs{both}"
            )


def _members(
    players: Sequence[PlayerSpec], groups: Sequence[tuple[str, int]]
) -> dict[str, list[PlayerSpec]]:
    members: dict[str, list[PlayerSpec]] = {}
    for name, _ in groups:
        if name in members:
            raise DealError(f"--group {name} is given twice")
        members[name] = []
    for player in players:
        if player.group is None or player.group not in members:
            raise DealError(
                f"player {player.full_name}: write GROUP/NAME=age1... with one of the groups "
                f"given by --group ({', '.join(members)})"
            )
        members[player.group].append(player)
    empty = [name for name, held in members.items() if not held]
    if empty:
        raise DealError(f"group {empty[0]} has no player: add --player {empty[0]}/NAME=age1...")
    return members


def dealt_groups(document: object) -> tuple[TocGroup, ...]:
    """The dealt record (one `TocGroup` per group) of a dealer's output."""
    try:
        if not isinstance(document, Mapping):
            raise TypeError
        if "groups" in document:
            specs = document["groups"]
            if not isinstance(specs, Mapping) or not specs:
                raise TypeError
            return deal_record([_record(spec) for spec in specs.values()])
        return deal_record([_record(document)])
    except (TypeError, KeyError, ValueError, DealError):
        raise QuorumError(
            "not a dealer's output: expected {group_id, threshold, size, ...} or "
            "{groups: {NAME: {group_id, threshold, size}}, ...}"
        ) from None


def _record(spec: object) -> TocGroup:
    if not isinstance(spec, Mapping):
        raise TypeError
    group_id, threshold, size = spec["group_id"], spec["threshold"], spec["size"]
    for value in (threshold, size):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 255:
            raise ValueError
    if not isinstance(group_id, str) or not re.fullmatch(r"[A-Z2-7]{8}", group_id):
        raise ValueError
    if threshold == 1:
        return TocGroup(group_id, max(size, 2), 2, clear=True)
    if threshold > size:
        raise ValueError
    return TocGroup(group_id, size, threshold)
