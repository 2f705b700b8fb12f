"""The web console through the real app: sign-in and its defences (throttling, fixation, CSRF),
scoping to a person's part of the hierarchy, the case list, case actions that are the chat
commands, the map, the grid definition's export and import, and case photos."""

from __future__ import annotations

import io
import re
from typing import Any

import yaml
from aiohttp import ClientResponse

from bot.app import FACTORY, SERVICES
from bot.config import DEMO_GRID_FILE
from bot.console.auth import COOKIE
from bot.console.passwords import check_password, hash_password
from handlers import messages as m
from storage import console, grids
from storage.cases import timeline
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import Case, GridNode
from tests.conftest import INSIDE_HP01, LEADER_HP, LEADER_HP01, RESIDENT, RESIDENT_2, WeChat

PASSWORD = "correct-horse-42"
LAMP = "幸福里小区3号楼东侧路灯坏了"
OTHER_GRID = "春晖小区5号楼门口垃圾没人清"  # 春晖第一网格


async def set_password(wechat: WeChat, key: str, password: str = PASSWORD) -> None:
    async with transaction(wechat.app[FACTORY]) as session:
        staff = await console.staff_by_key(session, key)
        assert staff is not None
        await console.set_password(session, staff=staff, password_hash=hash_password(password))


def origin(wechat: WeChat) -> str:
    return str(wechat.client.make_url("")).rstrip("/")


async def login(wechat: WeChat, key: str, password: str = PASSWORD, *, with_password: bool = True) -> ClientResponse:
    if with_password:
        await set_password(wechat, key)
    form = await (await wechat.client.get("/console/login")).text()
    token = re.search(r'name="login_csrf" value="([^"]+)"', form)
    assert token is not None
    return await wechat.client.post(
        "/console/login",
        data={"login_csrf": token.group(1), "key": key, "password": password},
        headers={"Origin": origin(wechat)},
        allow_redirects=False,
    )


async def csrf_of(wechat: WeChat, path: str = "/console/cases") -> str:
    page = await (await wechat.client.get(path)).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def act(wechat: WeChat, number: str, action: str, **form: str) -> tuple[int, str]:
    data = {"csrf": await csrf_of(wechat, f"/console/cases/{number}"), **form}
    resp = await wechat.client.post(f"/console/cases/{number}/{action}", data=data, headers={"Origin": origin(wechat)})
    return resp.status, await resp.text()


def reply_on(page: str) -> str:
    found = re.search(r'id="reply">([^<]*)<', page)
    assert found is not None, page
    return found.group(1).replace("&#34;", '"').replace("&#39;", "'")


def session_cookie(wechat: WeChat) -> str | None:
    for cookie in wechat.client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    return None


async def report(wechat: WeChat, text: str = LAMP, who: str = RESIDENT) -> Case:
    await wechat.text(who, text)
    return (await wechat.cases())[-1]


async def current(wechat: WeChat, case: Case) -> Case:
    return next(c for c in await wechat.cases() if c.id == case.id)


async def steps(wechat: WeChat, case: Case) -> list[tuple[str, str | None, str | None]]:
    async with transaction(wechat.app[FACTORY]) as session:
        return [(e.action, e.actor_kind, e.to_status) for e in await timeline(session, case.id or 0)]


# --- passwords and sign-in ------------------------------------------------------------------------


def test_passwords_are_salted_scrypt_and_checked_exactly() -> None:
    one, two = hash_password(PASSWORD), hash_password(PASSWORD)
    assert one != two and one.startswith("scrypt$") and PASSWORD not in one
    assert check_password(PASSWORD, one) and not check_password(PASSWORD + "x", one)
    assert not check_password(PASSWORD, None) and not check_password(PASSWORD, "scrypt$garbage")


async def test_login_opens_the_case_list_and_a_wrong_password_does_not(wechat: WeChat) -> None:
    assert (await wechat.client.get("/console/cases", allow_redirects=False)).headers["Location"] == "/console/login"
    bad = await login(wechat, "hp01_leader", "wrong-password")
    assert bad.status == 401 and m.CONSOLE_LOGIN_FAILED in await bad.text()
    assert session_cookie(wechat) is None
    nobody = await login(wechat, "no_such_key", PASSWORD, with_password=False)
    assert nobody.status == 401 and m.CONSOLE_LOGIN_FAILED in await nobody.text()
    ok = await login(wechat, "hp01_leader")
    assert ok.status == 303 and ok.headers["Location"] == "/console/cases"
    cookie = ok.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/console/"
    page = await (await wechat.client.get("/console/cases")).text()
    assert "张伟（和平里第一网格 网格员）" in page


async def test_five_failures_lock_the_key_even_for_the_right_password(wechat: WeChat) -> None:
    await set_password(wechat, "hp01_leader")
    for _ in range(5):
        assert (await login(wechat, "hp01_leader", "guess", with_password=False)).status == 401
    refused = await login(wechat, "hp01_leader", PASSWORD, with_password=False)
    assert refused.status == 429 and "登录失败次数过多，请 15 分钟后再试" in await refused.text()
    wechat.clock.advance(minutes=16)
    assert (await login(wechat, "hp01_leader", PASSWORD, with_password=False)).status == 303


async def test_failures_from_one_address_lock_other_keys_too(wechat: WeChat) -> None:
    for n in range(5):
        await login(wechat, f"guess_{n}", "guess", with_password=False)
    assert (await login(wechat, "hp01_leader")).status == 429


async def test_login_issues_a_new_token_and_logout_ends_it(wechat: WeChat) -> None:
    planted = "attacker-chosen-token"
    wechat.client.session.cookie_jar.update_cookies({COOKIE: planted}, wechat.client.make_url("/console/"))
    await login(wechat, "hp01_leader")
    first = session_cookie(wechat)
    assert first is not None and first != planted
    await login(wechat, "hp01_leader")
    second = session_cookie(wechat)
    assert second not in (None, first)
    # The first token is dead: a browser still holding it is sent to log in.
    stale = await wechat.client.get("/console/cases", cookies={COOKIE: first}, allow_redirects=False)
    assert stale.status == 303
    csrf = await csrf_of(wechat)
    out = await wechat.client.post(
        "/console/logout", data={"csrf": csrf}, headers={"Origin": origin(wechat)}, allow_redirects=False
    )
    assert out.status == 303
    again = await wechat.client.get("/console/cases", cookies={COOKIE: second or ""}, allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == "/console/login"


async def test_a_new_password_ends_the_old_sessions(wechat: WeChat) -> None:
    await login(wechat, "hp01_leader")
    await set_password(wechat, "hp01_leader", "another-password-1")
    assert (await wechat.client.get("/console/cases", allow_redirects=False)).status == 303


# --- CSRF ---------------------------------------------------------------------------------------------


async def test_posts_without_the_token_or_from_another_origin_are_refused(wechat: WeChat) -> None:
    case = await report(wechat)
    await login(wechat, "hp01_leader")
    url = f"/console/cases/{case.number}/resolve"
    csrf = await csrf_of(wechat, f"/console/cases/{case.number}")
    missing = await wechat.client.post(url, data={"note": "已修好"}, headers={"Origin": origin(wechat)})
    wrong = await wechat.client.post(url, data={"note": "已修好", "csrf": "x" * 43}, headers={"Origin": origin(wechat)})
    elsewhere = await wechat.client.post(
        url, data={"note": "已修好", "csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    referer = await wechat.client.post(
        url, data={"note": "已修好", "csrf": csrf}, headers={"Referer": "https://evil.example/page"}
    )
    assert [r.status for r in (missing, wrong, elsewhere, referer)] == [403, 403, 403, 403]
    assert m.CONSOLE_CSRF_FAILED in await missing.text()
    assert (await current(wechat, case)).status == Status.DISPATCHED
    # The login form too: without its token nothing happens.
    forged = await wechat.client.post(
        "/console/login", data={"key": "hp01_leader", "password": PASSWORD}, headers={"Origin": origin(wechat)}
    )
    assert forged.status == 403


# --- scope ----------------------------------------------------------------------------------------


async def test_another_grids_case_is_not_found_by_url(wechat: WeChat) -> None:
    mine, theirs = await report(wechat), await report(wechat, OTHER_GRID, RESIDENT_2)
    await login(wechat, "hp01_leader")
    assert (await wechat.client.get(f"/console/cases/{mine.number}")).status == 200
    page = await wechat.client.get(f"/console/cases/{theirs.number}")
    nosuch = await wechat.client.get("/console/cases/G20991231-0001")
    assert page.status == nosuch.status == 404 and await page.text() == await nosuch.text()
    assert (await wechat.client.get(f"/console/cases/{theirs.number}/media/1")).status == 404
    status, _ = await act(wechat, mine.number, "resolve", note="x")  # a token for the POST below
    csrf = await csrf_of(wechat)
    post = await wechat.client.post(
        f"/console/cases/{theirs.number}/resolve",
        data={"csrf": csrf, "note": "已修好"},
        headers={"Origin": origin(wechat)},
    )
    assert post.status == 404 and (await current(wechat, theirs)).status == Status.DISPATCHED
    listing = await (await wechat.client.get("/console/cases")).text()
    assert theirs.number not in listing


async def test_the_community_sees_its_grids_and_the_street_sees_all(wechat: WeChat) -> None:
    mine, theirs = await report(wechat), await report(wechat, OTHER_GRID, RESIDENT_2)
    await login(wechat, "hp_leader")
    page = await (await wechat.client.get("/console/cases")).text()
    assert mine.number in page and theirs.number not in page
    await login(wechat, "xf_dispatcher")
    page = await (await wechat.client.get("/console/cases")).text()
    assert mine.number in page and theirs.number in page


# --- the case list -------------------------------------------------------------------------------------


async def test_list_filters_by_status_grid_category_overdue_and_text(wechat: WeChat) -> None:
    lamp, rubbish = await report(wechat), await report(wechat, OTHER_GRID, RESIDENT_2)
    await login(wechat, "xf_dispatcher")
    services = wechat.app[SERVICES]
    hp01 = next(r.id for r in services.grids.refs.values() if r.code == "xf-hp-01")

    async def numbers(**query: Any) -> set[str]:
        page = await (await wechat.client.get("/console/cases", params=query)).text()
        return set(re.findall(r'href="/console/cases/(G\d{8}-\d{4})"', page))

    assert await numbers() == {lamp.number, rubbish.number}
    assert await numbers(grid=hp01) == {lamp.number}
    assert await numbers(category=lamp.category) == {lamp.number}
    assert await numbers(q=rubbish.number.lower()) == {rubbish.number}
    assert await numbers(q="路灯") == {lamp.number}
    assert await numbers(q="100%_") == set()
    assert await numbers(status=Status.DISPATCHED.value) == {lamp.number, rubbish.number}
    assert await numbers(status=Status.CLOSED.value) == set()
    assert await numbers(overdue="1") == set()
    wechat.clock.advance(days=30)
    assert (await wechat.client.get("/console/cases", allow_redirects=False)).status == 303  # session expired
    await login(wechat, "xf_dispatcher")
    assert await numbers(overdue="1") == {lamp.number, rubbish.number}
    assert await numbers(status="nonsense", grid="x", page="-3") == {lamp.number, rubbish.number}


async def test_the_list_has_pages(wechat: WeChat) -> None:
    for n in range(23):
        await wechat.text(f"o_resident_{n:02d}", f"幸福里小区{n + 1}号楼路灯坏了")
    await login(wechat, "xf_dispatcher")
    first = await (await wechat.client.get("/console/cases")).text()
    second = await (await wechat.client.get("/console/cases", params={"page": "2"})).text()
    assert "工单（23）" in first and "第 1 / 2 页" in first and "第 2 / 2 页" in second
    assert len(re.findall(r'href="/console/cases/G', first)) == 20
    assert len(re.findall(r'href="/console/cases/G', second)) == 3


# --- actions are the chat commands -----------------------------------------------------------------------


async def test_resolve_in_the_console_is_resolve_in_chat(wechat: WeChat) -> None:
    by_chat = await report(wechat)
    await wechat.text(LEADER_HP01, f"办结 {by_chat.number} 已更换灯泡")
    by_console = await report(wechat, "幸福里小区5号楼路灯坏了", RESIDENT_2)
    await login(wechat, "hp01_leader")
    status, page = await act(wechat, by_console.number, "resolve", note="已更换灯泡")
    assert status == 200 and reply_on(page) == m.RESOLVED.format(number=by_console.number)
    await wechat.deliver()
    assert await steps(wechat, by_console) == await steps(wechat, by_chat)
    assert (await current(wechat, by_console)).status == Status.AWAITING_RATING
    assert wechat.pushes_to(RESIDENT_2)[-1] == wechat.pushes_to(RESIDENT)[-1].replace(by_chat.number, by_console.number)
    assert wechat.pushes_to(RESIDENT_2)[-1].startswith(f"您反映的问题（{by_console.number}）已办结：已更换灯泡")


async def test_escalate_hands_the_case_to_the_community_with_its_card(wechat: WeChat) -> None:
    case = await report(wechat)
    await login(wechat, "hp01_leader")
    status, page = await act(wechat, case.number, "escalate", note="需要社区协调物业")
    assert reply_on(page) == m.ESCALATED.format(number=case.number, to="和平里社区 张秀英")
    await wechat.deliver()
    assert wechat.pushes_to(LEADER_HP)[-1].startswith("【上报】张伟上报：需要社区协调物业")
    assert (await current(wechat, case)).status == Status.DISPATCHED


async def test_dispatch_sends_an_unplaced_case_to_the_chosen_grid(wechat: WeChat) -> None:
    case = await report(wechat, "路灯坏了")
    assert case.status == Status.NEW and case.grid_id is None
    await login(wechat, "xf_dispatcher")
    hp01 = next(r for r in wechat.app[SERVICES].grids.refs.values() if r.code == "xf-hp-01")
    status, page = await act(wechat, case.number, "dispatch", target=str(hp01.id))
    assert reply_on(page) == m.DISPATCHED.format(number=case.number, grid="和平里第一网格", leader="张伟")
    case = await current(wechat, case)
    assert case.status == Status.DISPATCHED and case.grid_id == hp01.id
    await wechat.deliver()
    assert case.number in wechat.pushes_to(LEADER_HP01)[-1]


async def test_transfer_asks_the_department_and_keeps_the_owner(wechat: WeChat) -> None:
    case = await report(wechat, "幸福里小区3号楼停水了")
    await login(wechat, "hp01_leader")
    water = next(r for r in wechat.app[SERVICES].grids.refs.values() if r.code == "xf-dept-water")
    status, page = await act(wechat, case.number, "transfer", target=str(water.id), note="小区总阀门坏了")
    assert reply_on(page).startswith(f"已转派 {case.number} 给供水服务站 钱伟")
    assert (await current(wechat, case)).status == Status.TRANSFERRING


async def test_illegal_and_refused_actions_show_the_state_machines_answer(wechat: WeChat) -> None:
    case = await report(wechat)
    await login(wechat, "hp01_leader")
    status, page = await act(wechat, case.number, "reopen", note="再看看")
    assert reply_on(page) == m.ILLEGAL.format(number=case.number, status=Status.DISPATCHED, verb="重办")
    await act(wechat, case.number, "resolve", note="已修好")
    status, page = await act(wechat, case.number, "resolve", note="又修了一次")
    assert reply_on(page) == m.ILLEGAL.format(number=case.number, status=Status.AWAITING_RATING, verb="办结")
    # 重办 after 办结 is the reporter's (不满意) or a dispatcher's, not the leader's who did the work.
    status, page = await act(wechat, case.number, "reopen", note="再看看")
    assert reply_on(page) == m.NOT_YOUR_PART.format(number=case.number, verb="重办", who="调度员或反映人")
    assert (await current(wechat, case)).status == Status.AWAITING_RATING
    status, page = await act(wechat, case.number, "escalate", note="")
    assert status == 400 and reply_on(page) == m.CONSOLE_NEEDS_NOTE


async def test_case_page_shows_the_timeline_and_the_pin(wechat: WeChat) -> None:
    await wechat.location(RESIDENT, *INSIDE_HP01)
    case = await report(wechat, "这里的路灯坏了")
    await wechat.text(LEADER_HP01, f"接单 {case.number}")
    await login(wechat, "hp01_leader")
    page = await (await wechat.client.get(f"/console/cases/{case.number}")).text()
    assert "这里的路灯坏了" in page and "接单" in page and "openstreetmap.org/?mlat=39.92625" in page
    assert RESIDENT not in page  # never an openid


async def test_map_draws_open_cases_coloured_by_age(wechat: WeChat) -> None:
    await wechat.location(RESIDENT, *INSIDE_HP01)
    case = await report(wechat, "这里的路灯坏了")
    unplaced = await report(wechat, "路灯坏了", RESIDENT_2)
    await login(wechat, "hp_leader")
    page = await (await wechat.client.get("/console/map")).text()
    assert page.count('class="case"') == 1 and f'href="/console/cases/{case.number}"' in page
    assert "#2e7d32" in page and "和平里第一网格" in page and unplaced.number not in page  # not theirs: no grid
    wechat.clock.advance(days=8)
    await login(wechat, "hp_leader")
    assert "#c62828" in await (await wechat.client.get("/console/map")).text()


# --- grid management ------------------------------------------------------------------------------


async def test_grid_export_round_trips_and_import_updates_the_index(wechat: WeChat) -> None:
    await login(wechat, "xf_dispatcher")
    exported = await (await wechat.client.get("/console/grid/export")).text()
    assert grids.parse_grid_text(exported) == grids.read_grid_file(DEMO_GRID_FILE)
    data = yaml.safe_load(exported)
    data["nodes"][0]["children"][3]["children"][0]["name"] = "和平里一号网格"
    csrf = await csrf_of(wechat, "/console/grid")
    body = yaml.safe_dump(data, allow_unicode=True).encode()
    resp = await wechat.client.post(
        "/console/grid/import",
        data={"csrf": csrf, "file": io.BytesIO(body)},
        headers={"Origin": origin(wechat)},
    )
    text = await resp.text()
    assert resp.status == 200 and "已导入" in text, text
    async with transaction(wechat.app[FACTORY]) as session:
        node = next(n for n in await grids.all_nodes(session) if n.code == "xf-hp-01")
    assert isinstance(node, GridNode) and node.name == "和平里一号网格"
    assert wechat.app[SERVICES].grids.refs[node.id].name == "和平里一号网格"
    bad = await wechat.client.post(
        "/console/grid/import",
        data={"csrf": csrf, "file": io.BytesIO(b"nodes: [{code: 'bad code'}]")},
        headers={"Origin": origin(wechat)},
    )
    assert bad.status == 400 and "网格定义文件有误" in await bad.text()


async def test_only_the_top_dispatcher_exports_or_imports(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    assert (await wechat.client.get("/console/grid/export")).status == 404
    csrf = await csrf_of(wechat, "/console/grid")
    resp = await wechat.client.post(
        "/console/grid/import",
        data={"csrf": csrf, "file": io.BytesIO(b"nodes: []")},
        headers={"Origin": origin(wechat)},
    )
    assert resp.status == 403 and m.CONSOLE_GRID_TOP_ONLY in await resp.text()
    page = await (await wechat.client.get("/console/grid")).text()
    assert "和平里第一网格" in page and "春晖" not in page


async def test_a_dispatcher_reopens_a_resolved_case_as_a_residents_complaint_would(wechat: WeChat) -> None:
    case = await report(wechat)
    await wechat.text(LEADER_HP01, f"办结 {case.number} 已修好")
    await login(wechat, "xf_dispatcher")
    status, page = await act(wechat, case.number, "reopen", note="回访发现灯仍不亮")
    assert reply_on(page) == m.CONSOLE_REOPENED.format(number=case.number, leader="张伟")
    reopened = await current(wechat, case)
    assert reopened.status == Status.DISPATCHED and reopened.reopen_count == 1
    assert reopened.due_at is not None and reopened.due_at > wechat.clock.now()
    await wechat.deliver()
    assert "回访发现灯仍不亮" in wechat.pushes_to(LEADER_HP01)[-1]
    assert (
        case.number in wechat.pushes_to(RESIDENT)[-1]
        and "已重新交办给和平里第一网格 张伟" in wechat.pushes_to(RESIDENT)[-1]
    )


# --- photos -----------------------------------------------------------------------------------------


async def test_a_cases_photo_is_shown_to_those_who_may_see_the_case(with_media: WeChat) -> None:
    wechat = with_media
    case = await report(wechat)
    await wechat.send(wechat.xml(RESIDENT, "image", {"PicUrl": "http://x/1.jpg", "MediaId": "photo_1"}))
    await wechat.send(wechat.xml(RESIDENT, "image", {"PicUrl": "http://x/2.jpg", "MediaId": "missing_2"}))
    await wechat.deliver()
    await login(wechat, "hp01_leader")
    page = await (await wechat.client.get(f"/console/cases/{case.number}")).text()
    photos = re.findall(rf'<img src="(/console/cases/{case.number}/media/(\d+))"', page)
    assert len(photos) == 2
    (fetched, fetched_id), (lost, _) = photos
    resp = await wechat.client.get(fetched)
    body = await resp.read()
    assert resp.status == 200 and resp.content_type == "image/jpeg" and body.startswith(b"\xff\xd8")
    assert b"photo_1" in body and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await wechat.client.get(lost)).status == 404  # WeChat no longer had it: never fetched
    # Another case's event under this case's number is not this case's photo.
    other = await report(wechat, "幸福里小区5号楼路灯坏了", RESIDENT_2)
    assert (await wechat.client.get(f"/console/cases/{other.number}/media/{fetched_id}")).status == 404
    # Outside the case's grid the photo does not exist, as the case does not.
    await login(wechat, "ch01_leader")
    resp = await wechat.client.get(fetched)
    assert resp.status == 404 and b"\xff\xd8" not in await resp.read()
    await wechat.client.post(
        "/console/logout", data={"csrf": await csrf_of(wechat)}, headers={"Origin": origin(wechat)}
    )
    anonymous = await wechat.client.get(fetched, allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"] == "/console/login"
