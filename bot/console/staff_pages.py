"""人员管理: the staff in a person's part of the hierarchy; for those who manage them (rules in
handlers/staff_admin.py) adding, editing, deactivating, passwords and one-time login links.

Someone outside the person's part of the hierarchy does not exist here (404, as a wrong id);
someone they may see but not manage is refused (403). Every change redirects to the member's page
with what it did (POST-redirect-GET)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.console.auth import (
    KICK,
    LINK_PREFIX,
    db,
    expected_origin,
    flash,
    forbidden,
    int_param,
    pre_login_form,
    staff_of,
    start_session,
    take_flash,
    text_param,
    token_hash,
)
from bot.console.pages import ROLE_NAMES, _now, _services, render
from bot.console.passwords import MIN_LENGTH, hash_password
from handlers import messages as m
from handlers import staff_admin as rules
from handlers.pushes import push_to_staff, staff_address
from storage import console as sessions
from storage import staff as store
from storage.grids import StaffSpec
from storage.models import Staff

CONTACTS = ("wechat_openid", "wecom_userid")
CLEAR = "-"  # typed in a contact field: remove that id (blank: leave it as it is)
# What was typed into a refused add form, to fill it in again.
FORM = web.RequestKey("staff_form", dict)


def _node_name(request: web.Request, grid_id: int) -> str:
    ref = _services(request).grids.refs.get(grid_id)
    return ref.name if ref else "—"


def _row(request: web.Request, s: Staff) -> dict[str, Any]:
    zone = _services(request).zone
    return {
        "id": s.id,
        "key": s.key,
        "name": s.name,
        "role": ROLE_NAMES.get(s.role, s.role),
        "grid": _node_name(request, s.grid_id),
        "wechat": rules.mask(s.wechat_openid),
        "wecom": rules.mask(s.wecom_userid),
        "channel": m.CHANNEL_NAMES.get(s.channel, s.channel),
        "password": s.password_hash is not None,
        "last_login": s.last_login_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if s.last_login_at else "",
        "active": s.active,
        "manage": rules.may_manage(staff_of(request), s, _services(request)),
    }


def _managed_choices(request: web.Request) -> list[tuple[int, str]]:
    services = _services(request)
    managed = rules.managed_nodes(staff_of(request), services)
    refs = sorted((services.grids.refs[i] for i in managed if i in services.grids.refs), key=lambda r: (r.depth, r.id))
    return [(r.id, r.name) for r in refs]


async def staff_list(request: web.Request, *, message: str | None = None, status: int = 200) -> web.Response:
    me, services = staff_of(request), _services(request)
    people = await store.staff_on(db(request), rules.visible_nodes(me, services))
    return render(
        request,
        "staff.html",
        {
            "people": [_row(request, p) for p in people],
            "choices": _managed_choices(request),
            "roles": ROLE_NAMES,
            "message": message,
            "form": dict(request.get(FORM, {})),
        },
        status=status,
    )


async def staff_index(request: web.Request) -> web.StreamResponse:
    return await staff_list(request, message=take_flash(request))


async def _member(request: web.Request, *, manage: bool) -> Staff:
    """The member in the URL: 404 outside the person's scope, 403 if they may see but not manage."""
    raw = request.match_info["id"]
    member_id = int_param(raw)
    member = await store.get_staff(db(request), member_id) if member_id is not None else None
    me, services = staff_of(request), _services(request)
    if member is None or not rules.may_see(me, member, services):
        raise web.HTTPNotFound(text="没有这位工作人员。")
    if manage and not rules.may_manage(me, member, services):
        raise web.HTTPForbidden(text=m.CONSOLE_STAFF_NOT_YOURS)
    return member


async def member_page(request: web.Request) -> web.StreamResponse:
    return await _show_member(request, await _member(request, manage=False), message=take_flash(request))


async def _show_member(request: web.Request, member: Staff, *, message: str | None, status: int = 200) -> web.Response:
    return render(
        request,
        "staff_member.html",
        {
            "p": _row(request, member),
            "member": member,
            "choices": _managed_choices(request),
            "roles": ROLE_NAMES,
            "message": message,
            "min_length": MIN_LENGTH,
            "link_minutes": rules.LINK_MINUTES,
        },
        status=status,
    )


def _text(form: Any, name: str, limit: int = 100) -> str:
    value = form.get(name, "")
    return text_param(value, limit).strip() if isinstance(value, str) else ""


async def _spec(request: web.Request, form: Any, *, member: Staff | None) -> StaffSpec | str:
    """The form as a checked StaffSpec (the grid file's own rules), or what is wrong with it."""
    services = _services(request)
    grid = _text(form, "grid", 20)
    grid_id = int_param(grid)
    if grid_id is None or grid_id not in rules.managed_nodes(staff_of(request), services):
        return m.CONSOLE_STAFF_GRID_NOT_YOURS
    contacts: dict[str, str | None] = {}
    for name in CONTACTS:
        typed = _text(form, name, 64)
        kept = getattr(member, name) if member is not None else None
        contacts[name] = None if typed == CLEAR else (typed or kept)
    channel = _text(form, "channel", 10) or None
    try:
        return StaffSpec(
            key=member.key if member is not None else _text(form, "key", 64),
            name=_text(form, "name", 50),
            role=_text(form, "role", 20),  # type: ignore[arg-type]
            grid=services.grids.refs[grid_id].code,
            phone=member.phone if member is not None else None,
            channel=channel if channel in ("wechat", "wecom") else None,  # type: ignore[arg-type]
            **contacts,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return m.CONSOLE_STAFF_BAD.format(reason=f"{where}: {err['msg']}" if where else err["msg"])


async def _problem(request: web.Request, spec: StaffSpec, *, member: Staff | None) -> str | None:
    session = db(request)
    if member is None and await store.key_taken(session, spec.key):
        return m.CONSOLE_STAFF_KEY_TAKEN.format(key=spec.key)
    taken = await store.contact_taken(
        session,
        wechat_openid=spec.wechat_openid,
        wecom_userid=spec.wecom_userid,
        except_id=member.id if member is not None else None,
    )
    return m.CONSOLE_STAFF_CONTACT_TAKEN if taken else None


def _apply(member: Staff, spec: StaffSpec, grid_id: int) -> None:
    member.name, member.role, member.grid_id = spec.name, spec.role, grid_id
    member.wechat_openid, member.wecom_userid = spec.wechat_openid, spec.wecom_userid
    member.channel = spec.channel or "wechat"


async def add_member(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not rules.managed_nodes(staff_of(request), _services(request)):
        raise web.HTTPForbidden(text=m.CONSOLE_STAFF_NOT_YOURS)
    spec = await _spec(request, form, member=None)
    problem = spec if isinstance(spec, str) else await _problem(request, spec, member=None)
    if problem is not None or isinstance(spec, str):
        request[FORM] = {k: _text(form, k, 64) for k in ("key", "name", "role", "grid", "channel")}
        return await staff_list(request, message=problem, status=400)
    grid_id = int_param(_text(form, "grid", 20))
    assert grid_id is not None  # _spec checked it
    member = Staff(key=spec.key, name=spec.name, role=spec.role, grid_id=grid_id)
    _apply(member, spec, grid_id)
    await store.save(db(request), member)
    return flash(request, f"/console/staff/{member.id}", m.CONSOLE_STAFF_ADDED.format(name=member.name, key=member.key))


async def edit_member(request: web.Request) -> web.StreamResponse:
    member = await _member(request, manage=True)
    form = await request.post()
    spec = await _spec(request, form, member=member)
    problem = spec if isinstance(spec, str) else await _problem(request, spec, member=member)
    if problem is not None or isinstance(spec, str):
        return await _show_member(request, member, message=problem, status=400)
    grid_id = int_param(_text(form, "grid", 20))
    assert grid_id is not None  # _spec checked it
    _apply(member, spec, grid_id)
    await store.save(db(request), member)
    return flash(request, f"/console/staff/{member.id}", m.CONSOLE_STAFF_SAVED.format(name=member.name))


async def deactivate_member(request: web.Request) -> web.StreamResponse:
    """停用: no more cases routed to them (routing takes active staff only), no login, sessions and
    unused links ended. Refused while cases still wait on them: they would be stranded."""
    member = await _member(request, manage=True)
    assert member.id is not None
    held = await store.open_cases_held(db(request), member.id)
    if held:
        message = m.CONSOLE_STAFF_HAS_CASES.format(name=member.name, count=held)
        return await _show_member(request, member, message=message, status=409)
    member.active = False
    await store.save(db(request), member)
    await store.end_access(db(request), member.id)
    return flash(request, f"/console/staff/{member.id}", m.CONSOLE_STAFF_DEACTIVATED.format(name=member.name))


async def reactivate_member(request: web.Request) -> web.StreamResponse:
    member = await _member(request, manage=True)
    taken = await store.contact_taken(
        db(request), wechat_openid=member.wechat_openid, wecom_userid=member.wecom_userid, except_id=member.id
    )
    if taken:
        return await _show_member(request, member, message=m.CONSOLE_STAFF_CONTACT_TAKEN, status=409)
    member.active = True
    await store.save(db(request), member)
    return flash(request, f"/console/staff/{member.id}", m.CONSOLE_STAFF_REACTIVATED.format(name=member.name))


async def set_member_password(request: web.Request) -> web.StreamResponse:
    """A new password (or none: `clear`); either way their open sessions end."""
    member = await _member(request, manage=True)
    form = await request.post()
    password = form.get("password", "")
    password = password[:200] if isinstance(password, str) else ""
    if form.get("clear") == "1":
        await sessions.set_password(db(request), staff=member, password_hash=None)
        return flash(request, f"/console/staff/{member.id}", m.CONSOLE_PASSWORD_CLEARED.format(name=member.name))
    if len(password) < MIN_LENGTH:
        return await _show_member(
            request, member, message=m.CONSOLE_PASSWORD_SHORT.format(length=MIN_LENGTH), status=400
        )
    hashed = await asyncio.to_thread(hash_password, password)
    await sessions.set_password(db(request), staff=member, password_hash=hashed)
    return flash(request, f"/console/staff/{member.id}", m.CONSOLE_PASSWORD_SET.format(name=member.name))


async def send_login_link(request: web.Request) -> web.StreamResponse:
    """A one-time login link, pushed through the outbox to the member's WeChat or WeCom: a random
    token (only its hash stored), good once, for LINK_MINUTES."""
    member = await _member(request, manage=True)
    services, now, session = _services(request), _now(request), db(request)
    if not member.active:
        return await _show_member(request, member, message=m.CONSOLE_LINK_INACTIVE.format(name=member.name), status=409)
    address = staff_address(member, wecom_app=services.wecom_app)
    if address is None:
        message = m.CONSOLE_LINK_NO_ADDRESS.format(name=member.name)
        return await _show_member(request, member, message=message, status=409)
    assert member.id is not None
    token = secrets.token_urlsafe(32)
    await store.purge_links(session, now=now)
    store.add_login_link(
        session,
        token_hash=token_hash(token),
        staff_id=member.id,
        created_by=staff_of(request).id,
        now=now,
        expires_at=now + timedelta(minutes=rules.LINK_MINUTES),
    )
    url = f"{expected_origin(request)}{LINK_PREFIX}{token}"
    content = m.CONSOLE_LINK_PUSH.format(name=member.name, minutes=rules.LINK_MINUTES, url=url)
    push_to_staff(session, staff=member, content=content, now=now, services=services)
    request[KICK] = True
    channel = "wecom" if address[0] == "wecom_app" else "wechat"
    message = m.CONSOLE_LINK_SENT.format(name=member.name, channel=m.CHANNEL_NAMES[channel], minutes=rules.LINK_MINUTES)
    return flash(request, f"/console/staff/{member.id}", message)


# --- the link itself (public: the person is not logged in yet) -------------------------------------


async def link_form(request: web.Request) -> web.StreamResponse:
    """Opening the link does not use it (a chat app's link preview would): a button does."""
    token = request.match_info["token"]
    member = await store.live_link(db(request), token_hash=token_hash(token), now=_now(request))
    if member is None:
        return render(request, "link.html", {"invalid": m.CONSOLE_LINK_INVALID, "name": ""}, status=404)
    return pre_login_form(request, render, "link.html", {"invalid": None, "name": member.name}, status=200)


async def link_login(request: web.Request) -> web.StreamResponse:
    from bot.console.auth import login_csrf_ok

    form = await request.post()
    if not login_csrf_ok(request, form):
        return forbidden()
    member = await store.use_link(db(request), token_hash=token_hash(request.match_info["token"]), now=_now(request))
    if member is None:
        return render(request, "link.html", {"invalid": m.CONSOLE_LINK_INVALID, "name": ""}, status=404)
    return await start_session(request, member)
