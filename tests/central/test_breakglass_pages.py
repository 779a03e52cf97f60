"""The break-glass pages without a browser (SQLite and PostgreSQL): every
page renders for every role; the whole workflow through the forms, each
person in their own browser session: the KEK shown once, approvals pasted
sealed, the code shown once; refusals in words next to their field, with
the right status and nothing changed; review sign-offs. The browser test
(tests/ui/test_breakglass_browser.py) drives the same pages in chromium."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from central.breakglass_kit import BreakGlass
from central.kit import ManualClock, code_at
from central.test_reviews import breakglass_events, send
from central.test_ui_pages import ui_login
from shimmfa.central.operators import create_operator

PASSWORD = "a long test password"  # noqa: S105 - a test password


def person(breakglass: BreakGlass, clock: ManualClock, name: str, role: str) -> TestClient:
    """A browser of its own, logged in through the form as operator `name`."""
    _, secret = create_operator(breakglass.central, name, role=role, password=PASSWORD,
                                actor="test")  # fmt: skip
    browser = TestClient(breakglass.client.app, raise_server_exceptions=False)
    answer = browser.post(
        "/ui/login",
        data={"operator_id": name, "password": PASSWORD, "code": code_at(secret, clock())},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return browser


def csrf(browser: TestClient) -> str:
    return str(browser.cookies["shimmfa_csrf"])


def error_of(page: str, name: str) -> str:
    found = re.search(rf'id="e-{name}"[^>]*>([^<]+)<', page)
    assert found is not None, page[-3000:]
    return html.unescape(found.group(1))


def opened(rita: TestClient, shim_id: str = "shim-a") -> tuple[int, str]:
    answer = rita.post(
        "/ui/breakglass",
        data={
            "shim_id": shim_id,
            "reason": "pump 7 alarm\r\nvendor on site",  # a textarea's lines
            "ttl_minutes": "60",
            "csrf_token": csrf(rita),
        },  # fmt: skip
    )
    assert answer.status_code == 201, answer.text
    kek = re.search(r'<textarea id="kek"[^>]*>([^<]+)</textarea>', answer.text)
    number = re.search(r"Break-glass request (\d+) opened", answer.text)
    assert kek is not None and number is not None
    return int(number.group(1)), kek.group(1).strip()


@pytest.mark.parametrize("role", ["admin", "clinical_engineering", "infosec", "auditor"])
def test_every_breakglass_page_renders_for_every_role(
    breakglass: BreakGlass, clock: ManualClock, role: str
) -> None:
    request, _ = breakglass.open()
    send(breakglass.client, breakglass.shim, breakglass_events(breakglass.shim))
    browser = TestClient(breakglass.client.app, raise_server_exceptions=False)
    ui_login(browser, breakglass.central, clock, role)  # an admin gives the second factor too
    paths = ["/ui/breakglass", f"/ui/breakglass/{request['id']}", "/ui/reviews/1"]
    for path in [*paths, "/ui/reviews", "/ui/reviews?state=all", "/ui/reviews?state=overdue"]:
        answer = browser.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.headers["cache-control"] == "no-store"
    page = browser.get("/ui/breakglass").text
    assert ("Request a break-glass code" in page) == (role != "auditor")
    review = browser.get("/ui/reviews/1").text
    assert ("Your review comment" in review) == (role in ("clinical_engineering", "infosec"))
    assert browser.get("/ui/breakglass/999").status_code == 404


def test_the_workflow_through_the_forms(breakglass: BreakGlass, clock: ManualClock) -> None:
    deal = breakglass.deal
    rita = person(breakglass, clock, "rita", "clinical_engineering")
    form = {"shim_id": "shim-a", "reason": " ", "ttl_minutes": "60", "csrf_token": csrf(rita)}
    empty = rita.post("/ui/breakglass", data=form)
    assert empty.status_code == 422 and "say why" in error_of(empty.text, "reason")
    unknown = rita.post("/ui/breakglass", data={**form, "shim_id": "nope", "reason": "x"})
    assert unknown.status_code == 404 and "no shim" in error_of(unknown.text, "shim_id")
    number, kek = opened(rita)
    page = rita.get(f"/ui/breakglass/{number}").text
    assert kek not in page  # shown once
    tek = re.search(r'<code id="tek">([^<]+)</code>', page)
    assert tek is not None
    for name, role in (("ann", "clinical_engineering"), ("bob", "clinical_engineering"),
                       ("ivan", "infosec")):  # fmt: skip
        holder = person(breakglass, clock, name, role)
        page = holder.get(f"/ui/breakglass/{number}").text
        assert "Send my approval" in page
        if name == "ann":
            junk = holder.post(
                f"/ui/breakglass/{number}/approve",
                data={"encrypted_toc": "my toc", "csrf_token": csrf(holder)},
            )
            assert junk.status_code == 422
            assert "not an ASCII-armored age file" in error_of(junk.text, "encrypted_toc")
        sent = holder.post(
            f"/ui/breakglass/{number}/approve",
            data={"encrypted_toc": deal.sealed(name, tek.group(1)), "csrf_token": csrf(holder)},
            follow_redirects=False,
        )
        assert sent.status_code == 303, sent.text
        assert "Send my approval" not in holder.get(f"/ui/breakglass/{number}").text
    wrong = rita.post(f"/ui/breakglass/{number}/code",
                      data={"kek": breakglass.open()[1], "csrf_token": csrf(rita)})  # fmt: skip
    assert wrong.status_code == 400 and "KEK" in error_of(wrong.text, "kek")
    shown = rita.post(f"/ui/breakglass/{number}/code", data={"kek": kek, "csrf_token": csrf(rita)})
    assert shown.status_code == 200
    code = re.search(r'id="breakglass-code"[^>]*>(\d{6})<', shown.text)
    assert code is not None and code.group(1) == code_at(deal.secret, clock())
    again = rita.post(f"/ui/breakglass/{number}/code", data={"kek": kek, "csrf_token": csrf(rita)})
    assert again.status_code == 410 and "released already" in error_of(again.text, "kek")
    assert code.group(1) not in rita.get(f"/ui/breakglass/{number}").text


def test_the_forms_refuse_the_wrong_person_in_words(
    breakglass: BreakGlass, clock: ManualClock
) -> None:
    rita = person(breakglass, clock, "rita", "clinical_engineering")
    number, kek = opened(rita)
    state = breakglass.client.get(f"/api/v1/breakglass/requests/{number}",
                                  headers=breakglass.as_("rita")).json()  # fmt: skip
    auditor = person(breakglass, clock, "audrey", "auditor")
    page = auditor.get(f"/ui/breakglass/{number}").text
    assert "Send my approval" not in page and "Get the code" not in page
    refused = auditor.post(f"/ui/breakglass/{number}/approve",
                           data={"encrypted_toc": breakglass.deal.sealed("ann", state["tek"]),
                                 "csrf_token": csrf(auditor)})  # fmt: skip
    assert refused.status_code == 403
    assert "holds no Toc" in error_of(refused.text, "encrypted_toc")
    no_csrf = auditor.post(f"/ui/breakglass/{number}/approve", data={"encrypted_toc": "x"})
    assert no_csrf.status_code == 403
    ann = person(breakglass, clock, "ann", "clinical_engineering")
    taken = ann.post(f"/ui/breakglass/{number}/code", data={"kek": kek, "csrf_token": csrf(ann)})
    assert taken.status_code == 403 and "only the requester" in error_of(taken.text, "kek")
    after = breakglass.client.get(f"/api/v1/breakglass/requests/{number}",
                                  headers=breakglass.as_("rita")).json()  # fmt: skip
    assert after == state


def test_reviews_are_signed_off_through_the_form(
    breakglass: BreakGlass, clock: ManualClock
) -> None:
    send(breakglass.client, breakglass.shim, breakglass_events(breakglass.shim))
    cleo = person(breakglass, clock, "cleo", "clinical_engineering")
    listed = cleo.get("/ui/reviews").text
    assert 'data-state="open"' in listed
    empty = cleo.post("/ui/reviews/1/signoff", data={"comment": "", "csrf_token": csrf(cleo)})
    assert empty.status_code == 422 and "write your review" in error_of(empty.text, "comment")
    done = cleo.post("/ui/reviews/1/signoff", data={"comment": "checked the recording",
                                                    "csrf_token": csrf(cleo)},
                     follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    page = cleo.get("/ui/reviews/1").text
    assert "signed by operator:cleo" in page and "Your review comment" not in page
    iris = person(breakglass, clock, "iris", "infosec")
    iris.post("/ui/reviews/1/signoff", data={"comment": "ok", "csrf_token": csrf(iris)})
    assert 'data-state="closed"' in iris.get("/ui/reviews?state=closed").text
