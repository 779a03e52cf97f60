"""The break-glass deal as the shim registers it with central: the stored
public record in central's form (roles, holders by their names there),
never anything secret; a record of another shape is a clear error."""

from __future__ import annotations

import json

import pytest

from shimmfa.errors import QuorumError
from shimmfa.shim.reporting.breakglass_deal import registration_body

STORED = {
    "groups": {
        "clinical": {"group_id": "7GCUCI2Y", "threshold": 2, "size": 3},
        "infosec": {"group_id": "3OROTSEU", "threshold": 1, "size": 2},
    },
    "note": "ICU pump 7",
    "holders": {
        "clinical/ann": "age1ann",
        "clinical/bob": "age1bob",
        "clinical/cat": "age1cat",
        "infosec/ivan": "age1ivan",
        "infosec/ines": "age1ines",
    },
}


def test_each_group_gets_its_role_and_its_holders_by_name() -> None:
    body = registration_body(STORED)
    assert body == {
        "note": "ICU pump 7",
        "groups": {
            "clinical": {
                "group_id": "7GCUCI2Y", "threshold": 2, "size": 3,
                "role": "clinical_engineering",
                "holders": {"ann": "age1ann", "bob": "age1bob", "cat": "age1cat"},
            },
            "infosec": {
                "group_id": "3OROTSEU", "threshold": 1, "size": 2, "role": "infosec",
                "holders": {"ivan": "age1ivan", "ines": "age1ines"},
            },
        },
    }  # fmt: skip
    assert "tocs" not in json.dumps(body)


@pytest.mark.parametrize(
    "stored",
    [
        {},
        {"groups": STORED["groups"]},
        {"holders": STORED["holders"]},
        {**STORED, "groups": {"pharmacy": {"group_id": "X", "threshold": 1, "size": 1}}},
        {**STORED, "groups": {"clinical": "2 of 3"}},
    ],
)
def test_a_stored_record_of_another_shape_is_a_clear_error(stored: dict[str, object]) -> None:
    with pytest.raises(QuorumError, match="stored break-glass deal"):
        registration_body(stored)
