"""What an MFA chain asks for (`shimmfa.core.chain_policy`): the seed's
`Policy` and `FactorDefinition`, their validation messages, and the seed's
dict form of a factor."""

from __future__ import annotations

from typing import Any

import pytest

from shimmfa.core.chain import RESET_LABEL, FactorDefinition, Policy

# The seed README's factors, in its dict form.
SEED_FACTORS = [
    {"id": "token_1", "label": "Authenticator App", "type": "totp"},
    {"id": "token_2", "label": "Backup Device", "type": "totp"},
    {"id": "token_3", "label": "Hardware Token", "type": "totp"},
]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factors": SEED_FACTORS + [SEED_FACTORS[0]]}, "^factor ids must be unique$"),
        ({"required_steps": 4}, "^required_steps cannot exceed number of factors$"),
        ({"factors": []}, "^required_steps cannot exceed number of factors$"),
        ({"mode": "shuffled"}, "mode must be 'fixed' or 'random'"),
        ({"required_steps": 0}, "required_steps must be at least 1"),
        ({"required_steps": True}, "required_steps must be an integer"),
        ({"window": 4}, "window must be between 0 and 3"),
        ({"window": -1}, "window must be between 0 and 3"),
        ({"factors": [{"id": "a", "label": "A", "type": "sms"}]}, "type must be 'totp'"),
        ({"factors": [{"id": "a", "label": "A", "colour": "red"}]}, "unknown factor key"),
        ({"factors": [{"id": "a"}]}, "a factor needs label"),
        ({"factors": [{"id": "a", "label": "A", "digits": 7}]}, "digits must be 6 or 8"),
        ({"factors": [{"id": "a", "label": "A", "period": 0}]}, "period must be at least 1"),
        ({"factors": [{"id": "a", "label": "A", "algorithm": "MD5"}]}, "algorithm must be"),
        ({"factors": [{"id": "a", "label": RESET_LABEL}]}, "reserved"),
        ({"factors": [{"id": "a", "label": "A\x1b[2J"}]}, "printable"),
        ({"factors": [{"id": "", "label": "A"}]}, "factor id"),
        ({"factors": ["token_1"]}, "FactorDefinition or a dict"),
    ],
)
def test_policy_refuses_what_it_cannot_run(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"mode": "fixed", "required_steps": 1, "factors": SEED_FACTORS}
    with pytest.raises(ValueError, match=message):
        Policy(**(args | kwargs))


def test_policy_accepts_definitions_and_dicts_alike() -> None:
    definitions = [FactorDefinition(f["id"], f["label"], f["type"]) for f in SEED_FACTORS]
    assert Policy("random", 2, definitions) == Policy("random", 2, SEED_FACTORS)
    policy = Policy("random", 2, SEED_FACTORS)
    assert policy.window == 1
    assert policy.factors[2] == FactorDefinition("token_3", "Hardware Token", "totp", "SHA1", 6, 30)


def test_a_factor_dict_may_carry_its_totp_parameters() -> None:
    policy = Policy(
        "fixed",
        1,
        [{"id": "hw", "label": "Hardware Token", "algorithm": "SHA256", "digits": 8, "period": 60}],
        window=3,
    )
    assert policy.factors == (FactorDefinition("hw", "Hardware Token", "totp", "SHA256", 8, 60),)
    assert policy.window == 3


def test_factors_must_be_a_list_not_one_factor() -> None:
    with pytest.raises(ValueError, match="list of factor definitions"):
        Policy("fixed", 1, SEED_FACTORS[0])  # type: ignore[arg-type]
