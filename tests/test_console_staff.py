"""The console's 人员管理 through the real app: who sees and manages whom, adding, editing and
deactivating staff (and routing respecting it), passwords, one-time login links pushed to WeChat,
the grid export reflecting it all; and POST-redirect-GET on case actions."""

from __future__ import annotations

import io
import re

import yaml
from sqlmodel import select

from bot.app import FACTORY
from bot.console.auth import token_hash
from handlers import messages as m
from storage import grids
from storage.db import transaction
from storage.models import LoginLink, Staff
from tests.conftest import LEADER_HP, LEADER_HP01, RESIDENT, WeChat
from tests.test_console import csrf_of, login, origin, reply_on, report, session_cookie, set_password

NEW_OPENID = "o_new_deputy_hp01_abcdef"


async def staff(wechat: WeChat, key: str) -> Staff:
    async with transaction(wechat.app[FACTORY]) as session:
        found = (await session.exec(select(Staff).where(Staff.key == key))).first()
    assert found is not None
    return found


async def node_id(wechat: WeChat, code: str) -> int:
    async with transaction(wechat.app[FACTORY]) as session:
        return next(n.id for n in await grids.all_nodes(session) if n.code == code and n.id is not None)


async def post(wechat: WeChat, path: str, page: str = "/console/staff", **form: str) -> tuple[int, str]:
    """A form posted as the browser would (following the redirect): the status and final page."""
    data = {"csrf": await csrf_of(wechat, page), **form}
    resp = await wechat.client.post(path, data=data, headers={"Origin": origin(wechat)})
    return resp.status, await resp.text()


async def member_post(wechat: WeChat, key: str, action: str, **form: str) -> tuple[int, str]:
    member = await staff(wechat, key)
    return await post(wechat, f"/console/staff/{member.id}/{action}", **form)


# --- seeing -----------------------------------------------------------------------------------------


async def test_the_list_shows_the_scope_with_ids_masked(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    page = await (await wechat.client.get("/console/staff")).text()
    for name in ("张秀英", "张伟", "赵敏", "孙磊", "何平"):
        assert name in page
    assert "周婷" not in page and "李建国" not in page  # another community; the street above
    assert LEADER_HP01 not in page and "o_de…01" in page  # the openid masked
    assert "已设密码" in page  # hp_leader's own, set by login()
    assert re.search(r"张秀英.*?\d{4}-\d\d-\d\d \d\d:\d\d", page, re.S)  # last login recorded


async def test_out_of_scope_is_not_found_and_unmanaged_is_refused(wechat: WeChat) -> None:
    ch01, inspector = await staff(wechat, "ch01_leader"), await staff(wechat, "hp_inspector")
    await login(wechat, "hp_leader")
    assert (await wechat.client.get(f"/console/staff/{ch01.id}")).status == 404
    assert (await wechat.client.get("/console/staff/99999")).status == 404
    status, _ = await member_post(wechat, "ch01_leader", "edit", name="改名", role="leader", grid="1")
    assert status == 404
    # 何平 works beside the community leader, not below: seen, not managed; nor is oneself.
    assert (await wechat.client.get(f"/console/staff/{inspector.id}")).status == 200
    for key in ("hp_inspector", "hp_leader"):
        status, body = await member_post(wechat, key, "deactivate")
        assert status == 403 and m.CONSOLE_STAFF_NOT_YOURS in body
    assert (await staff(wechat, "hp_inspector")).active and (await staff(wechat, "hp_leader")).active
    # A grid leader manages nobody: no add form, and adding is refused.
    await login(wechat, "hp01_leader")
    page = await (await wechat.client.get("/console/staff")).text()
    assert "添加工作人员" not in page and "赵敏" not in page
    status, body = await post(wechat, "/console/staff", key="x1", name="某某", role="leader", grid="1")
    assert status == 403


async def test_a_member_cannot_be_placed_outside_the_managers_nodes(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    ch01 = await node_id(wechat, "xf-ch-01")
    status, body = await post(
        wechat, "/console/staff", key="hp_new", name="新人", role="leader", grid=str(ch01), wechat_openid=NEW_OPENID
    )
    assert status == 400 and m.CONSOLE_STAFF_GRID_NOT_YOURS in body
    hp_node = await node_id(wechat, "xf-hp")  # their own node: beside them, not below
    status, body = await post(
        wechat, "/console/staff", key="hp_new", name="新人", role="leader", grid=str(hp_node), wechat_openid=NEW_OPENID
    )
    assert status == 400 and m.CONSOLE_STAFF_GRID_NOT_YOURS in body
    hp01 = await node_id(wechat, "xf-hp-01")
    status, body = await post(wechat, "/console/staff", key="hp_new", name="新人", role="leader", grid=str(hp01))
    assert status == 400 and "needs wechat_openid or wecom_userid" in body
    status, body = await post(
        wechat, "/console/staff", key="hp_new", name="新人", role="leader", grid=str(hp01), wechat_openid=LEADER_HP
    )
    assert status == 400 and m.CONSOLE_STAFF_CONTACT_TAKEN in body
    status, body = await post(
        wechat,
        "/console/staff",
        key="hp02_leader",
        name="新人",
        role="leader",
        grid=str(hp01),
        wechat_openid=NEW_OPENID,
    )
    assert status == 400 and m.CONSOLE_STAFF_KEY_TAKEN.format(key="hp02_leader") in body


# --- changing -----------------------------------------------------------------------------------------


async def test_a_deactivated_leader_gets_no_cases_and_cannot_log_in(wechat: WeChat) -> None:
    await set_password(wechat, "hp01_leader")
    await login(wechat, "hp_leader")
    hp01 = await node_id(wechat, "xf-hp-01")
    status, page = await post(
        wechat,
        "/console/staff",
        key="hp01_deputy",
        name="刘洋",
        role="leader",
        grid=str(hp01),
        wechat_openid=NEW_OPENID,
    )
    assert status == 200 and reply_on(page) == m.CONSOLE_STAFF_ADDED.format(name="刘洋", key="hp01_deputy")
    status, page = await member_post(wechat, "hp01_leader", "deactivate")
    assert status == 200 and reply_on(page) == m.CONSOLE_STAFF_DEACTIVATED.format(name="张伟")
    case = await report(wechat)
    await wechat.deliver()
    assert case.assignee_id == (await staff(wechat, "hp01_deputy")).id
    assert case.number in wechat.pushes_to(NEW_OPENID)[-1]
    assert not any(case.number in p for p in wechat.pushes_to(LEADER_HP01))
    refused = await login(wechat, "hp01_leader", with_password=False)
    assert refused.status == 401
    listing = await (await wechat.client.get("/console/staff")).text()
    assert "已停用" in listing


async def test_deactivating_someone_holding_cases_is_refused(wechat: WeChat) -> None:
    case = await report(wechat)
    await login(wechat, "hp_leader")
    status, page = await member_post(wechat, "hp01_leader", "deactivate")
    assert status == 409 and m.CONSOLE_STAFF_HAS_CASES.format(name="张伟", count=1) in page
    assert (await staff(wechat, "hp01_leader")).active and case.assignee_id == (await staff(wechat, "hp01_leader")).id


async def test_deactivation_ends_their_session(wechat: WeChat) -> None:
    await login(wechat, "hp01_leader")
    their_cookie = session_cookie(wechat)
    await login(wechat, "xf_dispatcher")
    await member_post(wechat, "hp01_leader", "deactivate")
    stale = await wechat.client.get(
        "/console/cases", cookies={"gridbot_console": their_cookie or ""}, allow_redirects=False
    )
    assert stale.status == 303 and stale.headers["Location"] == "/console/login"


async def test_edits_show_in_the_grid_export_and_round_trip(wechat: WeChat) -> None:
    await login(wechat, "xf_dispatcher")  # the street's dispatcher: manages everyone but themselves
    hp02 = await node_id(wechat, "xf-hp-02")
    status, page = await member_post(
        wechat,
        "hp03_leader",
        "edit",
        name="孙磊磊",
        role="leader",
        grid=str(hp02),
        wecom_userid="sunlei",
        channel="wecom",
    )
    assert status == 200 and reply_on(page) == m.CONSOLE_STAFF_SAVED.format(name="孙磊磊")
    await member_post(wechat, "hp_inspector", "deactivate")
    exported = await (await wechat.client.get("/console/grid/export")).text()
    people = {s["key"]: s for s in yaml.safe_load(exported)["staff"]}
    assert people["hp03_leader"] == {
        "key": "hp03_leader",
        "name": "孙磊磊",
        "role": "leader",
        "grid": "xf-hp-02",
        "phone": "13900002103",
        "wechat_openid": "o_demo_sunlei_hp03",
        "wecom_userid": "sunlei",
        "channel": "wecom",
    }
    assert "hp_inspector" not in people
    # Importing the export back changes nothing: exporting again gives the same file.
    resp = await wechat.client.post(
        "/console/grid/import",
        data={"csrf": await csrf_of(wechat, "/console/grid"), "file": io.BytesIO(exported.encode())},
        headers={"Origin": origin(wechat)},
    )
    assert resp.status == 200
    assert await (await wechat.client.get("/console/grid/export")).text() == exported
    # A contact id typed as "-" is removed; blank keeps it.
    await member_post(wechat, "hp03_leader", "edit", name="孙磊磊", role="leader", grid=str(hp02), wechat_openid="-")
    edited = await staff(wechat, "hp03_leader")
    assert edited.wechat_openid is None and edited.wecom_userid == "sunlei" and edited.channel == "wecom"


async def test_a_manager_sets_and_clears_a_password(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    status, page = await member_post(wechat, "hp01_leader", "password", password="short")
    assert status == 400 and m.CONSOLE_PASSWORD_SHORT.format(length=8) in page
    status, page = await member_post(wechat, "hp01_leader", "password", password="new-password-9")
    assert reply_on(page) == m.CONSOLE_PASSWORD_SET.format(name="张伟")
    assert (await login(wechat, "hp01_leader", "new-password-9", with_password=False)).status == 303
    await login(wechat, "hp_leader")
    status, page = await member_post(wechat, "hp01_leader", "password", clear="1")
    assert reply_on(page) == m.CONSOLE_PASSWORD_CLEARED.format(name="张伟")
    assert (await login(wechat, "hp01_leader", "new-password-9", with_password=False)).status == 401


# --- one-time login links ------------------------------------------------------------------------------


async def send_link(wechat: WeChat, key: str = "hp01_leader", openid: str = LEADER_HP01) -> str:
    status, page = await member_post(wechat, key, "link")
    assert status == 200, page
    await wechat.deliver()
    found = re.search(r"https?://[^/\s]+(/console/link/[A-Za-z0-9_-]+)", wechat.pushes_to(openid)[-1])
    assert found is not None, wechat.pushes_to(openid)
    return found.group(1)


async def use_link(wechat: WeChat, path: str) -> int:
    form = await wechat.client.get(path)
    if form.status != 200:
        return form.status
    token = re.search(r'name="login_csrf" value="([^"]+)"', await form.text())
    assert token is not None
    resp = await wechat.client.post(
        path, data={"login_csrf": token.group(1)}, headers={"Origin": origin(wechat)}, allow_redirects=False
    )
    return resp.status


async def test_a_one_time_link_pushed_to_wechat_logs_in_once(wechat: WeChat) -> None:
    await login(wechat, "xf_dispatcher")
    dispatcher_cookie = session_cookie(wechat)
    status, page = await member_post(wechat, "hp01_leader", "link")  # 张伟 has no password at all
    assert reply_on(page) == m.CONSOLE_LINK_SENT.format(name="张伟", channel="微信", minutes=15)
    await wechat.deliver()
    push = wechat.pushes_to(LEADER_HP01)[-1]
    assert push.startswith("【工单台】张伟，这是您的一次性登录链接")
    path = re.search(r"(/console/link/[A-Za-z0-9_-]+)", push)
    assert path is not None
    token = path.group(1).rsplit("/", 1)[1]
    async with transaction(wechat.app[FACTORY]) as session:
        links = (await session.exec(select(LoginLink))).all()
    assert [link.token_hash for link in links] == [token_hash(token)]  # only the hash is kept
    # Opening the link (as a chat app's preview would) does not use it up.
    assert (await wechat.client.get(path.group(1))).status == 200
    assert await use_link(wechat, path.group(1)) == 303
    # A new session, not the one the browser came with (no fixation), and it is 张伟's.
    assert session_cookie(wechat) not in (None, dispatcher_cookie)
    assert "张伟（和平里第一网格 网格员）" in await (await wechat.client.get("/console/cases")).text()
    assert (await staff(wechat, "hp01_leader")).last_login_at == wechat.clock.now()
    wechat.client.session.cookie_jar.clear()
    assert await use_link(wechat, path.group(1)) == 404  # used


async def test_a_link_expires_and_dies_with_deactivation(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    expiring = await send_link(wechat)
    wechat.clock.advance(minutes=16)
    await login(wechat, "hp_leader")
    withdrawn = await send_link(wechat)
    await member_post(wechat, "hp01_leader", "deactivate")
    wechat.client.session.cookie_jar.clear()
    assert await use_link(wechat, expiring) == 404
    assert await use_link(wechat, withdrawn) == 404
    page = await (await wechat.client.get(withdrawn)).text()
    assert m.CONSOLE_LINK_INVALID in page


async def test_a_link_post_needs_its_form_token(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    path = await send_link(wechat)
    wechat.client.session.cookie_jar.clear()
    forged = await wechat.client.post(path, data={}, headers={"Origin": origin(wechat)}, allow_redirects=False)
    elsewhere = await wechat.client.post(path, data={}, headers={"Origin": "https://evil.example"})
    assert forged.status == elsewhere.status == 403
    assert await use_link(wechat, path) == 303  # not used up by the refused attempts


# --- POST-redirect-GET ------------------------------------------------------------------------------------


async def test_a_case_action_redirects_and_shows_its_reply_once(wechat: WeChat) -> None:
    case = await report(wechat)
    await login(wechat, "hp01_leader")
    resp = await wechat.client.post(
        f"/console/cases/{case.number}/resolve",
        data={"csrf": await csrf_of(wechat, f"/console/cases/{case.number}"), "note": "已更换灯泡"},
        headers={"Origin": origin(wechat)},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == f"/console/cases/{case.number}"
    other = await (await wechat.client.get("/console/cases")).text()
    assert 'id="reply"' not in other  # the message waits for its own page
    shown = await (await wechat.client.get(f"/console/cases/{case.number}")).text()
    assert reply_on(shown) == m.RESOLVED.format(number=case.number)
    again = await (await wechat.client.get(f"/console/cases/{case.number}")).text()
    assert 'id="reply"' not in again
    await wechat.deliver()
    assert len([p for p in wechat.pushes_to(RESIDENT) if "已办结" in p]) == 1


async def test_hostile_ids_and_form_values_are_answered_not_a_500(wechat: WeChat) -> None:
    await login(wechat, "hp_leader")
    for path in ("/console/staff/²", "/console/staff/99999999999999999999999", "/console/staff/-1"):
        assert (await wechat.client.get(path)).status == 404, path
    hp01 = await node_id(wechat, "xf-hp-01")
    for grid in ("²", "9" * 40, f"{hp01}\x00"):
        status, _ = await post(wechat, "/console/staff", key="hp_x", name="新人", role="leader", grid=grid)
        assert status == 400, grid
    status, _ = await post(
        wechat,
        "/console/staff",
        key="hp_x\x00",
        name="新\x00人",
        role="leader",
        grid=str(hp01),
        wechat_openid=NEW_OPENID,
    )
    assert status in (200, 400)  # added with the NUL dropped, or refused: never a storage error
