"""What an MFA chain asks for: its factors and its policy (seed 003's
`FactorDefinition` and `Policy`, validated).

Rules of this module:

- A `Policy` fixes everything a caller could otherwise choose: the mode, how
  many factors one chain takes (`required_steps`) and the TOTP window (0 to
  `MAX_WINDOW` time steps). Fixed mode asks for the first `required_steps`
  factors in their order; random mode asks for `required_steps` of them in an
  order drawn anew for each attempt (`core.chain`).
- Each factor carries its own TOTP parameters (algorithm, digits, period);
  its label is what the person is asked for, so it is printable text and never
  `RESET_LABEL`.
- Factors may be given as `FactorDefinition`s or as the seed's dicts
  (`{"id", "label", "type"}`); unknown keys and anything invalid raise
  ValueError with a message that names the factor. The seed's two messages
  are kept: "factor ids must be unique" and "required_steps cannot exceed
  number of factors".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shimmfa.core.totp import ALGORITHMS, MAX_WINDOW

__all__ = ["MODES", "RESET_LABEL", "FactorDefinition", "Policy"]

RESET_LABEL = "RESET"
MODES = ("fixed", "random")
_FACTOR_KEYS = frozenset({"id", "label", "type", "algorithm", "digits", "period"})


@dataclass(frozen=True, slots=True)
class FactorDefinition:
    """One factor of a chain. `id` keys its secret and its replay floor;
    `label` is what the person is asked for (printable, never "RESET")."""

    id: str
    label: str
    type: str = "totp"
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.isprintable() or not self.id.strip():
            raise ValueError("a factor id must be non-empty printable text")
        name = f"factor {self.id!r}"
        if (
            not isinstance(self.label, str)
            or not self.label.isprintable()
            or not self.label.strip()
        ):
            raise ValueError(f"{name}: label must be non-empty printable text")
        if self.label == RESET_LABEL:
            raise ValueError(f"{name}: the label {RESET_LABEL!r} is reserved for failures")
        if self.type != "totp":
            raise ValueError(f"{name}: type must be 'totp', not {self.type!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"{name}: algorithm must be one of {', '.join(ALGORITHMS)}")
        if type(self.digits) is not int or self.digits not in (6, 8):
            raise ValueError(f"{name}: digits must be 6 or 8, not {self.digits!r}")
        if type(self.period) is not int or self.period < 1:
            raise ValueError(f"{name}: period must be at least 1 second, not {self.period!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FactorDefinition:
        """The seed's form: `{"id": ..., "label": ..., "type": "totp"}`, and
        optionally `algorithm`, `digits`, `period`."""
        unknown = sorted(set(data) - _FACTOR_KEYS)
        if unknown:
            raise ValueError(f"unknown factor key(s): {', '.join(map(str, unknown))}")
        missing = [key for key in ("id", "label") if key not in data]
        if missing:
            raise ValueError(f"a factor needs {' and '.join(missing)}")
        return cls(**dict(data))


@dataclass(frozen=True, slots=True, init=False)
class Policy:
    """Which factors a chain asks for, in which order, and the TOTP window.
    `factors` may be `FactorDefinition`s or the seed's dicts."""

    mode: str
    required_steps: int
    factors: tuple[FactorDefinition, ...]
    window: int

    def __init__(
        self,
        mode: str,
        required_steps: int,
        factors: Iterable[FactorDefinition | Mapping[str, Any]],
        window: int = 1,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'fixed' or 'random', not {mode!r}")
        if not isinstance(required_steps, int) or isinstance(required_steps, bool):
            raise ValueError(f"required_steps must be an integer, not {required_steps!r}")
        if required_steps < 1:
            raise ValueError(f"required_steps must be at least 1, not {required_steps}")
        if not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be between 0 and {MAX_WINDOW}, not {window!r}")
        if isinstance(factors, str | bytes | Mapping):
            raise ValueError("factors must be a list of factor definitions")
        normalised = tuple(_factor(item) for item in factors)
        if len({factor.id for factor in normalised}) != len(normalised):
            raise ValueError("factor ids must be unique")
        if required_steps > len(normalised):
            raise ValueError("required_steps cannot exceed number of factors")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "required_steps", required_steps)
        object.__setattr__(self, "factors", normalised)
        object.__setattr__(self, "window", window)


def _factor(item: object) -> FactorDefinition:
    if isinstance(item, FactorDefinition):
        return item
    if isinstance(item, Mapping):
        return FactorDefinition.from_dict(item)
    raise ValueError(f"a factor must be a FactorDefinition or a dict, not {type(item).__name__}")
