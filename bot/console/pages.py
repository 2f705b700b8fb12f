"""Console pages: the case list, a case with its timeline and actions, and its photos. Every case
is found through `handlers.console.in_scope`: outside a person's part of the hierarchy, a case
does not exist (404, the same as a wrong number)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import func
from sqlmodel import col, select

from bot.app import CLOCK, SERVICES, SETTINGS
from bot.console.auth import CSRF, KICK, STAFF, db, flash, int_param, staff_of, take_flash, text_param
from bot.outbox import media_path
from handlers import console, leader
from handlers import messages as m
from handlers.casework import grid_name
from handlers.context import Services
from handlers.places import DEPARTMENT_LEVEL
from storage import cases
from storage.lifecycle import OPEN_STATUSES, Status
from storage.models import Case, CaseEvent, Staff

PAGE_SIZE = 20
ROLE_NAMES = {"leader": "网格员", "dispatcher": "调度员", "inspector": "核查员"}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif")


def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    services: Services = request.config_dict[SERVICES]
    staff = request.get(STAFF)
    base = {
        "me": staff,
        "my_grid": grid_name(services, staff.grid_id) if staff else "",
        "my_role": ROLE_NAMES.get(staff.role, staff.role) if staff else "",
        "csrf": request.get(CSRF, ""),
        "office": services.office_name,
    }
    return aiohttp_jinja2.render_template(template, request, base | context, status=status)


def _now(request: web.Request) -> datetime:
    now: datetime = request.config_dict[CLOCK].now()
    return now


def _services(request: web.Request) -> Services:
    services: Services = request.config_dict[SERVICES]
    return services


def age_days(now: datetime, since: datetime) -> float:
    return (now - since).total_seconds() / 86400


def grid_choices(services: Services, staff: Staff, *, departments: bool) -> list[tuple[int, str]]:
    """Nodes in the person's part of the hierarchy, for filters and 派遣; departments for 转派."""
    below = set(services.grids.subtree(staff.grid_id))
    refs = sorted(services.grids.refs.values(), key=lambda r: (r.depth, r.id))
    return [
        (r.id, r.name)
        for r in refs
        if (r.id in below and r.level != DEPARTMENT_LEVEL) or (departments and r.level == DEPARTMENT_LEVEL)
    ]


async def index(request: web.Request) -> web.StreamResponse:
    return web.Response(status=303, headers={"Location": "/console/cases"})


async def case_list(request: web.Request) -> web.StreamResponse:
    """工单列表: filters by status, grid, category, overdue; search by number or text; pages."""
    services, staff, now = _services(request), staff_of(request), _now(request)
    q = request.query
    status, category = q.get("status", ""), text_param(q.get("category", ""), 50)
    text = text_param(q.get("q", ""), 200).strip()[:100]
    overdue = q.get("overdue") == "1"
    grid = int_param(q.get("grid", ""))
    page = max(1, int_param(q.get("page", "")) or 1)
    stmt = select(Case).where(console.in_scope(staff, services))
    if status in {s.value for s in Status}:
        stmt = stmt.where(Case.status == status)
    elif status == "open":
        stmt = stmt.where(col(Case.status).in_(list(OPEN_STATUSES)))
    if grid is not None:
        stmt = stmt.where(col(Case.grid_id).in_(services.grids.subtree(grid)))
    if category:
        stmt = stmt.where(Case.category == category)
    if overdue:
        stmt = stmt.where(col(Case.status).in_(list(OPEN_STATUSES)), col(Case.due_at) < now)
    if text:
        stmt = stmt.where((col(Case.number) == text.upper()) | col(Case.description).contains(text, autoescape=True))
    session = db(request)
    total = int((await session.exec(select(func.count()).select_from(stmt.subquery()))).one())
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    page = min(page, pages)  # past the last page: the last page (and an OFFSET the database can take)
    rows = (
        await session.exec(
            stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        )
    ).all()
    filters = {k: v for k, v in q.items() if k != "page" and v}
    return render(
        request,
        "cases.html",
        {
            "rows": [_row(c, services, now) for c in rows],
            "total": total,
            "page": page,
            "pages": pages,
            "filters": filters,
            "statuses": [s.value for s in Status],
            "grids": grid_choices(services, staff, departments=False),
            "categories": services.classifier.category_names(),
            "query": {"status": status, "grid": grid, "category": category, "overdue": overdue, "q": text},
        },
    )


def _row(case: Case, services: Services, now: datetime) -> dict[str, Any]:
    overdue = case.status in OPEN_STATUSES and case.due_at is not None and case.due_at < now
    return {
        "number": case.number,
        "status": case.status,
        "category": case.category,
        "grid": grid_name(services, case.grid_id),
        "place": case.place_text or m.UNKNOWN_PLACE,
        "description": case.description[:60],
        "created": case.created_at.astimezone(services.zone).strftime("%m-%d %H:%M"),
        "due": case.due_at.astimezone(services.zone).strftime("%m-%d %H:%M") if case.due_at else "",
        "overdue": overdue,
        "urgent": case.urgent,
    }


async def _case_or_404(request: web.Request) -> Case:
    number = request.match_info["number"]
    case = (
        await console.visible_case(db(request), staff=staff_of(request), services=_services(request), number=number)
        if text_param(number, 32) == number  # no NUL (PostgreSQL refuses it), no longer than a number
        else None
    )
    if case is None:
        raise web.HTTPNotFound(text="没有这个工单。")
    return case


async def case_page(request: web.Request) -> web.StreamResponse:
    case = await _case_or_404(request)
    return await _show_case(request, case, reply=take_flash(request))


async def _show_case(request: web.Request, case: Case, *, reply: str | None, status: int = 200) -> web.Response:
    services, now, session = _services(request), _now(request), db(request)
    events = []
    for e in await cases.timeline(session, case.id or 0):
        events.append(
            {
                "at": e.at.astimezone(services.zone).strftime("%m-%d %H:%M"),
                "action": e.action,
                "actor": await leader.actor_name(session, e.actor_kind, e.actor_id),
                "note": e.note if e.note and not e.note.startswith("http") else "",
                "photo": f"/console/cases/{case.number}/media/{e.id}" if e.media_id else None,
                "status": e.to_status if e.to_status and e.to_status != e.from_status else "",
            }
        )
    assignee = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    row = _row(case, services, now)
    return render(
        request,
        "case.html",
        {
            "case": case,
            "row": row,
            "description": case.description,
            "assignee": assignee.name if assignee else "—",
            "events": events,
            "reply": reply,
            "osm": f"https://www.openstreetmap.org/?mlat={case.lat}&mlon={case.lon}#map=18/{case.lat}/{case.lon}"
            if case.lat is not None and case.lon is not None
            else None,
            "dispatch_grids": grid_choices(services, staff_of(request), departments=False),
            "transfer_targets": grid_choices(services, staff_of(request), departments=True),
        },
        status=status,
    )


async def case_action(request: web.Request) -> web.StreamResponse:
    """派遣, 转派, 上报, 办结, 重办: the chat command's own handler does it; its reply is shown on the
    case page the browser is sent to (303: a reload does not post again). A form missing its note or
    target is shown again, with a 400."""
    case = await _case_or_404(request)
    action = request.match_info["action"]
    if action not in console.ACTIONS:
        raise web.HTTPNotFound(text="没有这个操作。")
    form = await request.post()
    note, target = text_param(form.get("note", ""), 500), int_param(form.get("target", ""))
    spec = console.ACTIONS[action]
    services = _services(request)
    target_name = ""
    if spec.needs_target:
        ref = services.grids.refs.get(target) if target is not None else None
        if ref is None:
            return await _show_case(request, case, reply=m.CONSOLE_NEEDS_TARGET, status=400)
        target_name = ref.name
    if spec.needs_note and not note.strip():
        return await _show_case(request, case, reply=m.CONSOLE_NEEDS_NOTE, status=400)
    reply = await console.perform(
        db(request),
        staff=staff_of(request),
        case=case,
        action=action,
        note=note,
        target=target_name,
        services=services,
        now=_now(request),
    )
    request[KICK] = True
    return flash(request, f"/console/cases/{case.number}", reply)


async def case_media(request: web.Request) -> web.StreamResponse:
    """A photo on a case's timeline, for those who may see the case: never by a guessable path."""
    case = await _case_or_404(request)
    event_id = request.match_info["event"]
    number = int_param(event_id)
    event = await db(request).get(CaseEvent, number) if number is not None else None
    media_dir: Path | None = request.config_dict[SETTINGS].media_dir
    if event is None or event.case_id != case.id or not event.media_id or media_dir is None:
        raise web.HTTPNotFound(text="没有这张照片。")
    for content_type in _IMAGE_TYPES:
        path = media_path(media_dir, event.media_id, content_type)
        if path.is_file():
            return web.Response(
                body=path.read_bytes(),
                content_type=content_type,
                headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
            )
    raise web.HTTPNotFound(text="照片尚未取回。")
