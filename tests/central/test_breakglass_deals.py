"""A shim registers its break-glass deal with central, as the shim: the
public record is stored and registered with the oracle's registry, the
same record again changes nothing, a newer one replaces it (audited), and
no body carrying a Toc or the secret is ever stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select

from central.breakglass_kit import BreakGlass, Deal
from central.kit import SimShim
from shimmfa.central.context import Central
from shimmfa.quorum.store_sql import group_table


def post(client: TestClient, shim: SimShim, body: object, shim_id: str = "shim-a") -> Any:
    return client.post(f"/api/v1/shims/{shim_id}/breakglass", json=body, headers=shim.auth)


def registered_groups(central: Central) -> set[str]:
    with central.engine.connect() as conn:
        return set(conn.scalars(select(group_table.c.group_id)))


def dump(central: Central) -> str:
    """Every row of every table of central's database, as text."""
    tables = MetaData()
    tables.reflect(central.engine)
    with central.engine.connect() as conn:
        return "\n".join(
            repr(row) for table in tables.sorted_tables for row in conn.execute(table.select())
        )


def test_a_shim_registers_its_deal_and_the_same_record_again_changes_nothing(
    client: TestClient, central: Central, shim: SimShim, admin: dict[str, str]
) -> None:
    deal = Deal()
    first = post(client, shim, deal.record())
    assert first.status_code == 201, first.text
    assert first.json()["groups"] == deal.record()["groups"]
    assert first.json()["replaced"] is None
    again = post(client, shim, deal.record())
    assert again.status_code == 200 and again.json()["deal_id"] == first.json()["deal_id"]
    assert registered_groups(central) == {deal.group_id("clinical"), deal.group_id("infosec")}
    shown = client.get("/api/v1/shims/shim-a/breakglass", headers=admin).json()
    assert shown["current"]["groups"]["infosec"]["holders"] == {
        name: deal.holders[name].recipient for name in ("ivan", "ines")
    }
    assert shown["previous"] == []
    events = client.get("/api/v1/events", params={"kind": "breakglass_deal_registered"},
                        headers=admin).json()["items"]  # fmt: skip
    assert len(events) == 1 and events[0]["shim_id"] == "shim-a"


def test_nothing_secret_is_ever_stored(client: TestClient, central: Central, shim: SimShim) -> None:
    deal = Deal()
    with_tocs = {**deal.record(), "tocs": deal.document["tocs"]}
    with_secret = {**deal.record(), "secret": deal.secret}
    in_group = copy.deepcopy(deal.record())
    in_group["groups"]["clinical"]["tocs"] = deal.document["tocs"]
    key_note = {**deal.record(), "note": "AGE-SECRET-KEY-1QQQQ"}
    toc_note = {**deal.record(), "note": deal.sealed_to_holder("ann")[:60]}
    for body in (with_tocs, with_secret, in_group, key_note, toc_note, deal.document):
        answer = post(client, shim, body)
        assert (answer.status_code, answer.json()["code"]) == (422, "malformed"), answer.text
    assert post(client, shim, deal.record()).status_code == 201
    stored = dump(central)
    assert deal.secret not in stored
    assert "AGE ENCRYPTED FILE" not in stored and "AGE-SECRET-KEY" not in stored
    for name in deal.holders:
        toc = deal.toc(name).as_dict()
        assert toc["share"] not in stored and toc["toc_id"] not in stored


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: r["groups"].pop("infosec"), "groups must map 2"),
        (lambda r: r["groups"]["infosec"].update(role="clinical_engineering"), "no group has"),
        (lambda r: r["groups"]["clinical"].update(size=4), "size is 4 but 3 holders"),
        (lambda r: r["groups"]["clinical"].update(threshold=4), "threshold must be"),
        (lambda r: r["groups"]["clinical"].update(group_id="short"), "group_id must be"),
        (lambda r: r["groups"]["clinical"]["holders"].update(ann="age1nope"), "holder ann"),
        (lambda r: r["groups"]["infosec"]["holders"].update(ann=r["groups"]["infosec"]
                                                            ["holders"].pop("ivan")),
         "holder ann appears twice"),
        (lambda r: r["groups"]["infosec"].pop("role") and r["groups"].update(
            security=r["groups"].pop("infosec")), "role must be one of"),
        (lambda r: r.update(note="x" * 300), "note must be"),
    ],
)  # fmt: skip
def test_a_bad_body_is_422_and_nothing_is_stored(
    client: TestClient, central: Central, shim: SimShim, change: Any, words: str
) -> None:
    body = Deal().record()
    change(body)
    answer = post(client, shim, body)
    assert (answer.status_code, answer.json()["code"]) == (422, "malformed"), answer.text
    assert words in answer.json()["message"]
    assert registered_groups(central) == set()
    assert (
        client.post(
            "/api/v1/shims/shim-a/breakglass", content=b"{not json", headers=shim.auth
        ).status_code
        == 422
    )


def test_a_role_may_be_left_out_when_the_label_says_it(client: TestClient, shim: SimShim) -> None:
    body = Deal().record()
    for spec in body["groups"].values():
        del spec["role"]
    answer = post(client, shim, body)
    assert answer.status_code == 201
    assert answer.json()["groups"]["clinical"]["role"] == "clinical_engineering"


def test_only_the_shim_itself_registers_its_deal(
    client: TestClient, central: Central, shim: SimShim, admin: dict[str, str]
) -> None:
    other = SimShim("shim-b")
    other.credential = client.post("/api/v1/shims", json=other.registration(),
                                   headers=admin).json()["credential"]  # fmt: skip
    deal = Deal()
    answer = post(client, other, deal.record(), shim_id="shim-a")
    assert (answer.status_code, answer.json()["code"]) == (403, "wrong_shim")
    answer = client.post("/api/v1/shims/shim-a/breakglass", json=deal.record(), headers=admin)
    assert answer.status_code == 401  # an operator's token is no shim credential
    assert client.post("/api/v1/shims/shim-a/breakglass", json=deal.record()).status_code == 401
    assert registered_groups(central) == set()
    assert client.get("/api/v1/shims/shim-a/breakglass").status_code == 401
    assert client.get("/api/v1/shims/nope/breakglass", headers=admin).status_code == 404


def test_a_newer_deal_replaces_the_older_which_is_refused_afterwards(
    breakglass: BreakGlass, admin: dict[str, str]
) -> None:
    client, shim, old = breakglass.client, breakglass.shim, breakglass.deal
    request, _ = breakglass.open()  # a request of the old deal stays as it is
    new = Deal()
    answer = post(client, shim, new.record())
    assert answer.status_code == 201
    assert answer.json()["replaced"] == old.group_id("clinical")
    assert registered_groups(breakglass.central) == {
        new.group_id("clinical"), new.group_id("infosec")
    }  # fmt: skip
    replaced = post(client, shim, old.record())
    assert (replaced.status_code, replaced.json()["code"]) == (409, "superseded")
    shown = client.get("/api/v1/shims/shim-a/breakglass", headers=admin).json()
    assert shown["current"]["deal_id"] == new.group_id("clinical")
    assert [d["deal_id"] for d in shown["previous"]] == [old.group_id("clinical")]
    kinds = [(e["kind"], e["fields"].get("deal_id")) for e in breakglass.events("breakglass_deal")]
    assert ("breakglass_deal_replaced", old.group_id("clinical")) in kinds
    fresh, _ = breakglass.open()
    assert fresh["deal_id"] == new.group_id("clinical")
    assert breakglass.state(request)["deal_id"] == old.group_id("clinical")


def test_group_ids_of_another_shims_deal_are_409(
    breakglass: BreakGlass, admin: dict[str, str]
) -> None:
    client = breakglass.client
    other = SimShim("shim-b")
    other.credential = client.post("/api/v1/shims", json=other.registration(),
                                   headers=admin).json()["credential"]  # fmt: skip
    answer = post(client, other, breakglass.deal.record(), shim_id="shim-b")
    assert (answer.status_code, answer.json()["code"]) == (409, "conflict")
    changed = breakglass.deal.record()
    changed["groups"]["infosec"]["threshold"] = 2
    answer = post(client, breakglass.shim, changed)
    assert (answer.status_code, answer.json()["code"]) == (409, "conflict")
