"""Break-glass requests through central's API, on SQLite and PostgreSQL, on a
manual clock: 2 of 3 clinical engineers AND 1 of 2 infosec officers
release the code, once, to the requester, and it is the code of the
shim's secret (`oathtool`); every refusal keeps nothing and says why; one
department alone never gets a code; every step is audited with the
authenticated approver."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from central.breakglass_kit import BreakGlass, Deal
from central.kit import ManualClock
from quorum.kit import needs_oathtool, oathtool
from shimmfa.quorum.store_sql import toc_table


def tocs_stored(breakglass: BreakGlass) -> int:
    with breakglass.central.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(toc_table)) or 0)


def refused(answer: Any, status: int, code: str) -> str:
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    message: str = answer.json()["message"]
    return message


@needs_oathtool
def test_both_departments_release_the_code_once_to_the_requester(
    breakglass: BreakGlass, clock: ManualClock
) -> None:
    request, kek = breakglass.open()
    assert request["state"] == "open" and request["tek"].startswith("age1")
    assert [(g["label"], g["role"], g["quorum"]) for g in request["groups"]] == [
        ("clinical", "clinical_engineering", 2),
        ("infosec", "infosec", 1),
    ]
    for name in ("ann", "ivan", "bob"):
        assert breakglass.approve(request, name).status_code == 201
    state = breakglass.state(request)
    assert [g["approvers"] for g in state["groups"]] == [["token:ann", "token:bob"], ["token:ivan"]]
    assert all(g["complete"] for g in state["groups"])
    code = breakglass.code(request, kek)
    assert code.status_code == 200, code.text
    assert code.json()["totp"] == oathtool(breakglass.deal.secret, clock.now)
    refused(breakglass.code(request, kek), 410, "released")
    assert breakglass.state(request)["state"] == "released"
    kinds = [(e["kind"], e["fields"].get("approver")) for e in breakglass.events()]
    assert ("breakglass_requested", None) in kinds
    assert [k for k in kinds if k[0] == "breakglass_approved"] == [
        ("breakglass_approved", "token:ann"),
        ("breakglass_approved", "token:ivan"),
        ("breakglass_approved", "token:bob"),
    ]
    released = [e for e in breakglass.events() if e["kind"] == "breakglass_code_released"]
    assert released[0]["fields"]["approvers"] == "token:ann, token:ivan, token:bob"
    assert released[0]["severity"] == 1 and released[0]["shim_id"] == "shim-a"
    assert code.json()["totp"] not in str(breakglass.events()) and kek not in str(
        breakglass.events()
    )


def test_below_threshold_is_409_saying_what_each_group_lacks(breakglass: BreakGlass) -> None:
    request, kek = breakglass.open()
    breakglass.approve(request, "ann")
    breakglass.approve(request, "ivan")
    message = refused(breakglass.code(request, kek), 409, "below_threshold")
    assert f"group {breakglass.deal.group_id('clinical')} has 1 of the 2" in message
    breakglass.approve(request, "cat")
    assert breakglass.code(request, kek).status_code == 200


def test_one_department_alone_never_gets_a_code(breakglass: BreakGlass) -> None:
    request, kek = breakglass.open()
    for name in ("ann", "bob", "cat"):
        assert breakglass.approve(request, name).status_code == 201
    message = refused(breakglass.code(request, kek), 409, "below_threshold")
    assert f"group {breakglass.deal.group_id('infosec')} has 0 of the 1" in message
    other, other_kek = breakglass.open()
    for name in ("ivan", "ines"):
        assert breakglass.approve(other, name).status_code == 201
    refused(breakglass.code(other, other_kek), 409, "below_threshold")


def test_a_clinical_engineer_with_an_infosec_toc_counts_for_nothing(
    breakglass: BreakGlass,
) -> None:
    """The Toc is read only at release: then it is of another group than
    its sender holds, and set aside (422 wrong_group)."""
    request, kek = breakglass.open()
    breakglass.approve(request, "bob")
    assert breakglass.approve(request, "ann", toc_of="ivan").status_code == 201
    refused(breakglass.code(request, kek), 422, "wrong_group")
    assert breakglass.state(request)["set_aside"] == [
        {"approver": "token:ann", "reason": "wrong_group"}
    ]
    breakglass.approve(request, "ann")  # her own Toc, after the other was set aside
    breakglass.approve(request, "ines")
    assert breakglass.code(request, kek).status_code == 200


def test_a_toc_of_another_deal_is_422(breakglass: BreakGlass) -> None:
    request, kek = breakglass.open()
    foreign = Deal().toc("ann")  # the same holder name, another shim's deal
    from shimmfa.quorum.age_tocs import seal_toc

    answer = breakglass.client.post(
        f"/api/v1/breakglass/requests/{request['id']}/approvals",
        json={"encrypted_toc": seal_toc(foreign, request["tek"])},
        headers=breakglass.as_("ann"),
    )
    assert answer.status_code == 201
    breakglass.approve(request, "ivan")
    refused(breakglass.code(request, kek), 422, "wrong_group")


def test_a_re_encrypted_duplicate_is_409(breakglass: BreakGlass) -> None:
    request, kek = breakglass.open()
    breakglass.approve(request, "ann")
    refused(breakglass.approve(request, "ann"), 409, "duplicate")  # ann again, sealed anew
    assert breakglass.approve(request, "bob", toc_of="ann").status_code == 201  # ann's share
    breakglass.approve(request, "ivan")
    refused(breakglass.code(request, kek), 409, "duplicate")
    assert len(breakglass.state(request)["groups"][0]["approvers"]) == 1


def test_a_wrong_kek_is_400_and_changes_nothing(breakglass: BreakGlass) -> None:
    request, kek = breakglass.open()
    for name in ("ann", "bob", "ines"):
        breakglass.approve(request, name)
    other = breakglass.open()[1]
    refused(breakglass.code(request, other), 400, "bad_kek")
    refused(breakglass.code(request, "not base64"), 400, "bad_kek")
    assert breakglass.code(request, kek).status_code == 200


def test_an_expired_request_is_410(breakglass: BreakGlass, clock: ManualClock) -> None:
    request, kek = breakglass.open(ttl=300)
    for name in ("ann", "bob"):
        breakglass.approve(request, name)
    clock.advance(300)
    refused(breakglass.approve(request, "ivan"), 410, "expired")
    refused(breakglass.code(request, kek), 410, "expired")
    assert breakglass.state(request)["state"] == "expired"
    assert (
        breakglass.client.get(
            "/api/v1/breakglass/requests",
            params={"state": "expired"},
            headers=breakglass.as_("rita"),
        ).json()["requests"][0]["id"]
        == request["id"]
    )


def test_unknown_requests_and_sessions_are_404(breakglass: BreakGlass) -> None:
    refused(breakglass.code({"id": 999}, "kek"), 404, "not_found")
    client = breakglass.client
    answer = client.get("/quorum/sessions/AAAAAAAAAAAAAAAA", headers=breakglass.as_("rita"))
    refused(answer, 404, "not_found")


@pytest.mark.parametrize("who", ["root", "audrey", "zed"])
def test_a_principal_holding_no_toc_of_the_deal_is_403_and_nothing_changes(
    breakglass: BreakGlass, who: str
) -> None:
    """An admin, an auditor, a clinical engineer who is no holder."""
    from shimmfa.central import access

    if who == "zed":
        breakglass.tokens[who] = access.create_token(
            breakglass.central, who, "clinical_engineering", actor="test"
        )[1]
    request, _ = breakglass.open()
    before = (breakglass.state(request), tocs_stored(breakglass))
    answer = breakglass.approve(request, who, toc_of="cat")
    refused(answer, 403, "not_a_holder")
    assert (breakglass.state(request), tocs_stored(breakglass)) == before
    audited = breakglass.events("breakglass_approval_refused")
    assert [(e["fields"]["approver"], e["fields"]["reason"]) for e in audited] == [
        (f"token:{who}", "not_a_holder")
    ]


def test_a_holder_acting_in_another_role_is_403_wrong_role(
    breakglass: BreakGlass, clock: ManualClock
) -> None:
    """Operator cat (infosec) is named as a clinical holder: logged in with
    password and code, her approval is refused and nothing is stored."""
    from central.kit import code_at
    from shimmfa.central.operators import create_operator

    password = "cat's long password"  # noqa: S105 - a test password
    _, secret = create_operator(
        breakglass.central, "cat", role="infosec", password=password, actor="test"
    )
    client = breakglass.client
    login = client.post(
        "/api/v1/login",
        json={"operator_id": "cat", "password": password, "code": code_at(secret, clock.now)},
    )
    assert login.status_code == 200, login.text
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    request, _ = breakglass.open()
    before = (breakglass.state(request), tocs_stored(breakglass))
    path = f"/api/v1/breakglass/requests/{request['id']}/approvals"
    body = {"encrypted_toc": breakglass.deal.sealed("cat", request["tek"])}
    refused(client.post(path, json=body), 403, "csrf")
    message = refused(client.post(path, json=body, headers=csrf), 403, "wrong_role")
    assert "clinical group" in message and "you act as infosec" in message
    assert (breakglass.state(request), tocs_stored(breakglass)) == before
    mounted = f"/quorum/sessions/{request['session_id']}/tocs"
    refused(client.post(mounted, json=body), 403, "forbidden")  # the cookie, no CSRF token
    refused(client.post(mounted, json=body, headers=csrf), 403, "not_permitted")
    assert (breakglass.state(request), tocs_stored(breakglass)) == before


def test_only_the_requester_gets_the_code(breakglass: BreakGlass) -> None:
    request, kek = breakglass.open()
    for name in ("ann", "bob", "ivan"):
        breakglass.approve(request, name)
    refused(breakglass.code(request, kek, who="ann"), 403, "not_requester")
    refused(breakglass.code(request, kek, who="audrey"), 403, "forbidden")
    assert breakglass.state(request)["state"] == "open"
    assert breakglass.code(request, kek).status_code == 200


def test_a_request_needs_a_shim_with_a_deal_a_reason_and_a_requester_role(
    breakglass: BreakGlass, admin: dict[str, str]
) -> None:
    client = breakglass.client
    body = {"shim_id": "shim-a", "reason": "pump 7"}
    assert client.post("/api/v1/breakglass/requests", json=body,
                       headers=breakglass.as_("audrey")).status_code == 403  # fmt: skip
    from central.kit import SimShim

    bare = SimShim("shim-b")
    assert client.post("/api/v1/shims", json=bare.registration(), headers=admin).status_code == 201
    answer = client.post("/api/v1/breakglass/requests", json={**body, "shim_id": "shim-b"},
                         headers=breakglass.as_("rita"))  # fmt: skip
    refused(answer, 409, "no_deal")
    answer = client.post("/api/v1/breakglass/requests", json={**body, "shim_id": "nope"},
                         headers=breakglass.as_("rita"))  # fmt: skip
    refused(answer, 404, "not_found")
    answer = client.post("/api/v1/breakglass/requests", json={**body, "shim_id": "a\x00b"},
                         headers=breakglass.as_("rita"))  # fmt: skip
    refused(answer, 422, "invalid")  # not a 500 from PostgreSQL, which stores no NUL
    answer = client.post("/api/v1/breakglass/requests", json={**body, "reason": "  "},
                         headers=breakglass.as_("rita"))  # fmt: skip
    refused(answer, 422, "reason")
    assert breakglass.events("breakglass_requested") == []
