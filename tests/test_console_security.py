"""The console under attack: forged posts (CSRF), planted sessions, other grids' cases by URL, password
guessing, script and template text in what residents wrote, and hostile query strings.

tests/test_console.py covers the basics (a missing or wrong CSRF token, a foreign Origin or
Referer, a planted unknown token, logout, five failures locking a key, another grid's case page);
these go further, and would fail if any of those defences broke.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from bot.app import FACTORY
from bot.config import Settings
from bot.console.auth import COOKIE, LOGIN_COOKIE
from bot.outbox import media_path
from handlers import messages as m
from storage import cases as case_store
from storage.db import transaction
from storage.lifecycle import Action
from storage.models import Case, ConsoleSession, LoginFailure
from tests.conftest import RESIDENT, RESIDENT_2, WeChat
from tests.test_console import LAMP, OTHER_GRID, PASSWORD, csrf_of, login, origin, report, session_cookie, set_password

INJECTED = "<script>alert(1)</script> {{7*7}} {% if 1 %}live{% endif %} '; DROP TABLE cases;--"


async def count(wechat: WeChat, table: Any) -> int:
    async with transaction(wechat.app[FACTORY]) as session:
        return int((await session.exec(select(func.count()).select_from(table))).one())


async def snapshot(wechat: WeChat, case: Case) -> tuple[Any, ...]:
    async with transaction(wechat.app[FACTORY]) as session:
        row = await session.get(Case, case.id)
        assert row is not None
        return (
            row.status,
            row.grid_id,
            row.assignee_id,
            row.due_at,
            len(await case_store.timeline(session, row.id or 0)),
        )


# --- sign-in --------------------------------------------------------------------------------------


class TestSecureCookies:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"console_secure_cookies": True})

    async def test_cookies_are_secure_httponly_and_same_site_when_served_over_https(self, wechat: WeChat) -> None:
        # The test client speaks http, so it keeps no Secure cookie: hand the login cookie back.
        await set_password(wechat, "hp01_leader")
        form = await wechat.client.get("/console/login")
        token = form.cookies[LOGIN_COOKIE].value
        ok = await wechat.client.post(
            "/console/login",
            data={"login_csrf": token, "key": "hp01_leader", "password": PASSWORD},
            cookies={LOGIN_COOKIE: token},
            headers={"Origin": origin(wechat)},
            allow_redirects=False,
        )
        assert ok.status == 303
        for cookie in (form.cookies[LOGIN_COOKIE], ok.cookies[COOKIE]):
            assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
            assert cookie["path"] == "/console/"


async def test_cookies_are_not_marked_secure_unless_configured(wechat: WeChat) -> None:
    ok = await login(wechat, "hp01_leader")
    assert not ok.cookies[COOKIE]["secure"] and ok.cookies[COOKIE]["httponly"]


async def test_a_login_form_token_that_is_not_the_cookies_is_refused(wechat: WeChat) -> None:
    await set_password(wechat, "hp01_leader")
    await wechat.client.get("/console/login")  # sets the login cookie
    forged = await wechat.client.post(
        "/console/login",
        data={"login_csrf": "a" * 43, "key": "hp01_leader", "password": PASSWORD},
        headers={"Origin": origin(wechat)},
        allow_redirects=False,
    )
    assert forged.status == 403 and session_cookie(wechat) is None
    assert await count(wechat, ConsoleSession) == 0


@pytest.mark.parametrize("header", [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Referer": "http://x/"}])
async def test_a_cross_site_login_is_refused_even_with_the_right_password(
    wechat: WeChat, header: dict[str, str]
) -> None:
    """Login CSRF: another site signing the victim in as the attacker (or anyone)."""
    await set_password(wechat, "hp01_leader")
    form = await (await wechat.client.get("/console/login")).text()
    token = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert token is not None
    resp = await wechat.client.post(
        "/console/login",
        data={"login_csrf": token.group(1), "key": "hp01_leader", "password": PASSWORD},
        headers=header,
        allow_redirects=False,
    )
    assert resp.status == 403 and m.CONSOLE_CSRF_FAILED in await resp.text()
    assert await count(wechat, ConsoleSession) == 0


async def test_a_planted_session_of_the_attacker_is_replaced_at_login(wechat: WeChat) -> None:
    """Session fixation with a real session: the attacker's own token, planted in the victim's
    browser, is not what the victim is signed in with, and never becomes the victim's."""
    await login(wechat, "hp_leader")  # the attacker, 张秀英's key
    attackers = session_cookie(wechat)
    assert attackers is not None
    await login(wechat, "hp01_leader")  # the victim signs in with that cookie in the browser
    victims = session_cookie(wechat)
    assert victims not in (None, attackers)
    page = await (await wechat.client.get("/console/cases", cookies={COOKIE: attackers})).text()
    assert "张伟" not in page  # the attacker's token is not the victim's session (it was ended)


async def test_logout_ends_the_session_on_the_server(wechat: WeChat) -> None:
    await login(wechat, "hp01_leader")
    token = session_cookie(wechat)
    assert await count(wechat, ConsoleSession) == 1
    out = await wechat.client.post(
        "/console/logout", data={"csrf": await csrf_of(wechat)}, headers={"Origin": origin(wechat)}
    )
    assert out.status == 200 and await count(wechat, ConsoleSession) == 0
    replay = await wechat.client.get("/console/cases", cookies={COOKIE: token or ""}, allow_redirects=False)
    assert replay.status == 303


async def test_an_address_that_guessed_too_often_recovers_after_the_window(wechat: WeChat) -> None:
    await set_password(wechat, "hp01_leader")
    for n in range(5):
        assert (await login(wechat, f"guess_{n}", "guess", with_password=False)).status == 401
    refused = await login(wechat, "hp01_leader", with_password=False)
    assert refused.status == 429 and session_cookie(wechat) is None
    wechat.clock.advance(minutes=14)
    assert (await login(wechat, "hp01_leader", with_password=False)).status == 429
    wechat.clock.advance(minutes=2)
    assert (await login(wechat, "hp01_leader", with_password=False)).status == 303


async def test_throttled_attempts_are_not_counted_and_failures_do_not_pile_up(wechat: WeChat) -> None:
    """A guesser who never gets in leaves at most one window's failures behind, however long they try."""
    for _window in range(6):
        for n in range(12):
            await login(wechat, f"guess_{n}", "guess", with_password=False)
        wechat.clock.advance(minutes=16)
    assert await count(wechat, LoginFailure) <= 2 * 5  # one row per key and one per address, per failure


@given(key=st.text(max_size=100), password=st.text(max_size=300))
async def test_any_login_form_gets_a_refusal_not_a_500(wechat: WeChat, key: str, password: str) -> None:
    wechat.clock.advance(minutes=16)  # out of the throttling window: reach the password check
    form = await (await wechat.client.get("/console/login")).text()
    token = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert token is not None
    resp = await wechat.client.post(
        "/console/login",
        data={"login_csrf": token.group(1), "key": key, "password": password},
        headers={"Origin": origin(wechat)},
        allow_redirects=False,
    )
    assert resp.status in (401, 429), await resp.text()


# --- other grids' cases --------------------------------------------------------------------------------


class TestOtherGridsMedia:
    @pytest.fixture
    def settings(self, settings: Settings, tmp_path: Any) -> Settings:
        return settings.model_copy(update={"media_dir": tmp_path / "media"})

    async def test_another_grids_photo_is_not_found_by_any_url(self, wechat: WeChat, settings: Settings) -> None:
        mine, theirs = await report(wechat), await report(wechat, OTHER_GRID, RESIDENT_2)
        assert settings.media_dir is not None
        settings.media_dir.mkdir()
        ids = {}
        async with transaction(wechat.app[FACTORY]) as session:
            for case, media in ((mine, "mine_photo"), (theirs, "their_photo")):
                row = await session.get(Case, case.id)
                assert row is not None
                event = await case_store.add_event(
                    session,
                    case=row,
                    action=Action.ATTACH,
                    actor_kind="resident",
                    now=wechat.clock.now(),
                    media_id=media,
                )
                await session.flush()
                ids[media] = event.id
                media_path(settings.media_dir, media, "image/jpeg").write_bytes(b"\xff\xd8" + media.encode())
        await login(wechat, "hp01_leader")
        own = await wechat.client.get(f"/console/cases/{mine.number}/media/{ids['mine_photo']}")
        assert own.status == 200 and await own.read() == b"\xff\xd8mine_photo"
        direct = await wechat.client.get(f"/console/cases/{theirs.number}/media/{ids['their_photo']}")
        borrowed = await wechat.client.get(f"/console/cases/{mine.number}/media/{ids['their_photo']}")
        assert (direct.status, borrowed.status) == (404, 404)
        assert b"their_photo" not in await direct.read() + await borrowed.read()


@pytest.mark.parametrize("action", ["dispatch", "transfer", "escalate", "resolve", "reopen", "nonsense"])
async def test_no_action_reaches_another_grids_case(wechat: WeChat, action: str) -> None:
    mine, theirs = await report(wechat), await report(wechat, OTHER_GRID, RESIDENT_2)
    await login(wechat, "hp01_leader")
    before = await snapshot(wechat, theirs)
    csrf = await csrf_of(wechat, f"/console/cases/{mine.number}")
    resp = await wechat.client.post(
        f"/console/cases/{theirs.number}/{action}",
        data={"csrf": csrf, "note": "越权", "target": "1"},
        headers={"Origin": origin(wechat)},
    )
    assert resp.status == 404 and theirs.number not in await resp.text()
    assert await snapshot(wechat, theirs) == before


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "G20261122-0002%00", "%3Cscript%3E", "' OR '1'='1"]
)
async def test_case_urls_that_are_not_case_numbers_are_not_found(wechat: WeChat, path: str) -> None:
    await report(wechat, OTHER_GRID, RESIDENT_2)
    await login(wechat, "hp01_leader")
    resp = await wechat.client.get(f"/console/cases/{path}")
    assert resp.status == 404 and "<script>" not in await resp.text()


# --- what residents wrote, shown to staff ------------------------------------------------------------


async def test_script_and_template_text_is_shown_escaped_and_unevaluated(wechat: WeChat) -> None:
    case = await report(wechat, f"{LAMP} {INJECTED}", RESIDENT)
    assert INJECTED in case.description  # stored as written
    await login(wechat, "hp01_leader")
    for path in (f"/console/cases/{case.number}", "/console/cases", "/console/cases?q=%3Cscript%3E"):
        page = await (await wechat.client.get(path)).text()
        assert "<script>alert" not in page, path
    page = await (await wechat.client.get(f"/console/cases/{case.number}")).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{7*7}}" in page and "{% if 1 %}live{% endif %}" in page  # shown, not run
    assert ">49<" not in page and " 49 " not in page
    assert await count(wechat, Case) == 1


@given(
    params=st.dictionaries(
        st.sampled_from(["status", "grid", "category", "overdue", "q", "page"]),
        st.one_of(
            st.text(max_size=40),
            st.integers(-(2**70), 2**70).map(str),
            st.sampled_from(["%", "_", "\\", "'", "\x00", "²", "٣", "9" * 19]),
        ),
        max_size=6,
    )
)
async def test_any_case_list_query_is_answered_not_a_500(wechat: WeChat, params: dict[str, str]) -> None:
    if session_cookie(wechat) is None:
        await login(wechat, "xf_dispatcher")
    resp = await wechat.client.get("/console/cases", params=params)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    "params",
    [{"page": "9" * 19}, {"page": "9" * 30}, {"page": "²"}, {"grid": "²"}, {"grid": "9" * 30}, {"q": "路灯\x00"},
     {"category": "\x00"}, {"status": "\x00"}],
    ids=["page-past-int64", "page-30-digits", "page-superscript", "grid-superscript", "grid-30-digits", "q-nul",
         "category-nul", "status-nul"],
)  # fmt: skip
async def test_hostile_case_list_parameters_are_answered(wechat: WeChat, params: dict[str, str]) -> None:
    """Once 500s: a page past 64 bits overflowed OFFSET; "²".isdigit() but int("²") raises; a NUL
    reached PostgreSQL, whose text cannot hold one."""
    case = await report(wechat)
    await login(wechat, "xf_dispatcher")
    resp = await wechat.client.get("/console/cases", params=params)
    assert resp.status == 200, await resp.text()
    if "page" in params:  # past the last page: the last page
        assert f"/console/cases/{case.number}" in await resp.text()


async def test_hostile_form_values_and_photo_ids_are_answered(wechat: WeChat) -> None:
    case = await report(wechat)
    await login(wechat, "xf_dispatcher")
    for event in ("²", "9" * 30, "9" * 19, "-1"):
        assert (await wechat.client.get(f"/console/cases/{case.number}/media/{event}")).status == 404
    csrf = await csrf_of(wechat, f"/console/cases/{case.number}")
    dispatch = await wechat.client.post(
        f"/console/cases/{case.number}/dispatch", data={"csrf": csrf, "target": "²"}, headers={"Origin": origin(wechat)}
    )
    assert dispatch.status == 400 and m.CONSOLE_NEEDS_TARGET in await dispatch.text()
    escalate = await wechat.client.post(
        f"/console/cases/{case.number}/escalate",
        data={"csrf": csrf, "note": "需要\x00协调"},
        headers={"Origin": origin(wechat)},
    )
    assert escalate.status == 200
    await wechat.client.post("/console/logout", data={"csrf": csrf}, headers={"Origin": origin(wechat)})
    nul_key = await login(wechat, "hp01\x00_leader", with_password=False)
    assert nul_key.status == 401


async def test_another_grids_case_is_in_no_list_search_or_map(wechat: WeChat) -> None:
    """(The list and the map are scoped as the case page is.)"""
    theirs = await report(wechat, OTHER_GRID, RESIDENT)
    await login(wechat, "hp01_leader")
    for path in ("/console/cases", f"/console/cases?q={theirs.number}", "/console/map"):
        assert f"/console/cases/{theirs.number}" not in await (await wechat.client.get(path)).text()
