"""The interactive demo's Ctrl-] menu: h hangs the laptop's cable up (the
demo goes on), any other key (or the end of input) quits."""

from __future__ import annotations

import os

import pytest

from shimmfa.demo.shim import _menu


@pytest.mark.parametrize(("key", "wanted"), [(b"h", "hangup"), (b"H", "hangup"), (b"q", "quit"),
                                             (b"\x1d", "quit"), (b"", "quit")])  # fmt: skip
def test_the_menu_key_decides(key: bytes, wanted: str, capfd: pytest.CaptureFixture[str]) -> None:
    reader, writer = os.pipe()
    try:
        os.write(writer, key)
        os.close(writer)
        assert _menu(reader) == wanted
    finally:
        os.close(reader)
    assert "h: hang up" in capfd.readouterr().out
