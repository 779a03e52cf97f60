"""A holder's own Toc, from what the holder has on disk: the Toc's JSON in
clear, the Toc sealed to them (armored age), or the dealer's whole output
(then `player` says which Toc is theirs).

Rules: a sealed Toc needs the holder's identities (`--identity FILE`);
the file is at most 1 MiB; a file that is none of the three says so. The
Toc is validated (`core.toc.parse_toc`) before anything is sent; nothing of
it is ever printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrage import x25519

from shimmfa.core.toc import Toc, parse_toc
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import ARMOR_BEGIN, open_toc

__all__ = ["load_toc", "read_text"]

MAX_FILE_BYTES = 1 << 20


def read_text(path: Path) -> str:
    """A small text file, or stdin for `-`."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise QuorumError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise QuorumError(f"{path}: larger than {MAX_FILE_BYTES} bytes; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise QuorumError(f"{path}: not UTF-8 text") from None


def load_toc(
    path: Path, identities: Sequence[x25519.Identity] = (), player: str | None = None
) -> Toc:
    """The holder's Toc from `path` (see the module rules)."""
    text = read_text(path)
    if text.lstrip().startswith(ARMOR_BEGIN):
        return _opened(path, text, identities)
    try:
        document = json.loads(text)
    except ValueError:
        raise QuorumError(
            f"{path}: neither a Toc (JSON), a sealed Toc (armored age) nor a dealer's output"
        ) from None
    if isinstance(document, Mapping) and isinstance(document.get("tocs"), Mapping):
        tocs = document["tocs"]
        if player is None or player not in tocs:
            names = ", ".join(sorted(str(name) for name in tocs)[:20])
            raise QuorumError(f"{path} is a dealer's output: say whose Toc with --player ({names})")
        return _opened(path, tocs[player], identities)
    return parse_toc(document)


def _opened(path: Path, armored: object, identities: Sequence[x25519.Identity]) -> Toc:
    if not identities:
        raise QuorumError(f"{path}: the Toc is sealed; give the holder's --identity FILE")
    return open_toc(armored, identities)
