"""Rewrite the README's configuration reference from the settings table
(`shimmfa config reference`); `make readme` runs it."""

from pathlib import Path

from shimmfa.shim.config import reference_table

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text(encoding="utf-8")
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
readme.write_text(f"{head}{START}{reference_table()}\n{END}{tail}", encoding="utf-8")
