"""Report intake (受理): residents' texts, voice, photos and location pins become routed cases.

A report often arrives in pieces — a text, then a photo, then a pin. Within the merge window the
pieces land on one case; the bot asks only for what is missing (usually the place).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import abuse
from handlers import messages as m
from handlers.context import Outcome, Services
from handlers.dispatching import notify_residents, place_of, route_case
from handlers.places import GridRef
from handlers.routing import Router, event, has_text, kind
from handlers.types import Inbound
from handlers.understand import Understanding, understand
from storage import cases, inbound
from storage.cases import window_start
from storage.lifecycle import Action, Status
from storage.models import Case, Resident, Staff

router = Router("intake")


@router.message(event("subscribe"))
async def on_subscribe(services: Services) -> str:
    return m.WELCOME.format(office=services.office_name)


@router.message(event("location"))
async def on_location_report(msg: Inbound, resident: Resident, now: datetime, session: AsyncSession) -> None:
    """WeChat's periodic location report (when the resident allowed it): kept as the last pin."""
    _keep_pin(resident, msg, now)
    session.add(resident)
    return None


@router.message(kind("event"))
async def on_other_event(msg: Inbound) -> None:
    return None  # unsubscribe, menu clicks …: nothing to say


@router.message(kind("location"))
async def on_location(
    msg: Inbound,
    resident: Resident,
    session: AsyncSession,
    services: Services,
    now: datetime,
    outcome: Outcome,
) -> str:
    assert msg.lat is not None and msg.lon is not None
    grid = services.grids.locate_point(msg.lat, msg.lon)
    waiting = await _awaiting_place(session, resident, services, now)
    if waiting is not None:
        waiting.lat, waiting.lon = msg.lat, msg.lon
        waiting.place_text = waiting.place_text or msg.label or f"{msg.lat:.5f},{msg.lon:.5f}"
        return await _place_found(session, resident, waiting, grid, services, now, outcome)
    recent = await _recent_case(session, resident, services, now)
    if recent is not None and recent.lat is None and recent.status in (Status.NEW, Status.DISPATCHED):
        # The pin wins over the text: it is where the resident stood. The text stays as description.
        recent.lat, recent.lon = msg.lat, msg.lon
        recent.place_text = recent.place_text or msg.label
        outcome.case_id = recent.id
        await _resident_event(session, recent, resident, Action.LOCATE, now, note=msg.label or "定位")
        if grid is not None and grid.id != recent.grid_id:
            await route_case(session, case=recent, grid=grid, services=services, now=now)
        session.add(recent)
        return m.PIN_ATTACHED.format(number=recent.number, grid=_owner_name(services, recent))
    _keep_pin(resident, msg, now)
    session.add(resident)
    return m.LOCATION_KEPT.format(label=f"（{msg.label}）" if msg.label else "")


@router.message(kind("voice"), has_text)
async def on_voice(
    msg: Inbound,
    resident: Resident,
    session: AsyncSession,
    services: Services,
    now: datetime,
    outcome: Outcome,
) -> str | None:
    """Voice with WeChat's Recognition text is a text report; the recording is kept on the case."""
    reply = await on_text(msg, resident, session, services, now, outcome)
    if outcome.case_id is not None and msg.media_id:
        case = await cases.get_case(session, outcome.case_id)
        if case is not None:
            await _resident_event(session, case, resident, Action.ATTACH, now, note="语音", media_id=msg.media_id)
    return reply


@router.message(kind("voice"))
async def on_voice_unrecognised() -> str:
    return m.VOICE_UNCLEAR


@router.message(kind("image"))
async def on_image(
    msg: Inbound,
    resident: Resident,
    session: AsyncSession,
    services: Services,
    now: datetime,
    outcome: Outcome,
) -> str:
    case = await _recent_case(session, resident, services, now, window=services.place_window_minutes)
    if case is None:
        return m.PHOTO_KEPT  # the inbound log keeps it; the next report picks it up
    target = await _original(session, case)
    await _resident_event(session, target, resident, Action.ATTACH, now, note=msg.url, media_id=msg.media_id)
    outcome.case_id = target.id
    return m.PHOTO_ATTACHED.format(number=target.number)


@router.message(kind("link"))
async def on_link() -> str:
    return m.LINK_UNSUPPORTED


@router.message(kind("text"), has_text)
async def on_text(
    msg: Inbound,
    resident: Resident,
    session: AsyncSession,
    services: Services,
    now: datetime,
    outcome: Outcome,
) -> str | None:
    text = (msg.text or "").strip()
    lat = lon = None
    if resident.last_location_at is not None and resident.last_location_at >= window_start(
        now, services.place_window_minutes
    ):
        lat, lon = resident.last_lat, resident.last_lon
    u = understand(text, classifier=services.classifier, grids=services.grids, lat=lat, lon=lon)
    if u.phone:
        resident.phone = u.phone
        session.add(resident)

    waiting = await _awaiting_place(session, resident, services, now)
    if waiting is not None and (u.grid is not None or u.place is not None or u.confidence < services.confirm_below):
        # The answer to "where is it?": a place name, or at worst an address we cannot map.
        waiting.place_text = text[:500]  # the whole answer is the resident's description of the place
        return await _place_found(session, resident, waiting, u.grid, services, now, outcome)

    recent = await _recent_case(session, resident, services, now)
    if recent is not None and _continues(recent, u, services):
        return await _supplement(session, resident, recent, u, text, now, outcome)

    if u.grid is not None:
        original = await _find_duplicate(session, u, services, now, lat=lat, lon=lon)
        if original is not None:
            return await _repeat(session, resident, original, u, text, now, outcome, services)

    allowed, refusal = await abuse.case_cap(session, resident=resident, services=services, now=now)
    if not allowed:
        return refusal
    case = await _new_case(session, resident, u, text, services, now, lat=lat, lon=lon)
    number = case.number
    outcome.case_id = case.id
    await _attach_loose_photos(session, resident, case, services, now)
    if u.grid is not None:
        return await _dispatch_reply(session, case, u.grid, services, now)
    resident.awaiting_place_case_id = case.id
    session.add(resident)
    if u.urgent and (root := services.grids.root()) is not None:
        # Danger does not wait for an address: the street level gets it now, the place follows.
        await route_case(session, case=case, grid=root, services=services, now=now)
        return m.URGENT_NEEDS_PLACE.format(category=u.category, number=number, grid=root.name)
    return m.CASE_NEEDS_PLACE.format(category=u.category, number=number)


@router.message(kind("text"))
async def on_empty_text() -> str:
    return m.EMPTY_TEXT


@router.message()
async def on_unknown() -> str:
    return m.UNSUPPORTED


def _continues(recent: Case, u: Understanding, services: Services) -> bool:
    """Does this text add to the resident's report of a moment ago, rather than start a new one?"""
    if recent.status not in (Status.NEW, Status.DISPATCHED, Status.DUPLICATE):
        return False
    same_subject = u.category == recent.category or u.confidence < services.confirm_below
    same_place = u.grid is None or recent.grid_id is None or u.grid.id == recent.grid_id
    return same_subject and same_place


async def _supplement(
    session: AsyncSession,
    resident: Resident,
    case: Case,
    u: Understanding,
    text: str,
    now: datetime,
    outcome: Outcome,
) -> str:
    target = await _original(session, case)
    if target.resident_id == resident.id:
        target.description = f"{target.description}\n{text}"[:4000]
        target.urgent = target.urgent or u.urgent
        session.add(target)
    await _resident_event(session, target, resident, Action.SUPPLEMENT, now, note=text)
    outcome.case_id = target.id
    return m.SUPPLEMENT_ADDED.format(number=target.number)


async def _find_duplicate(
    session: AsyncSession,
    u: Understanding,
    services: Services,
    now: datetime,
    *,
    lat: float | None,
    lon: float | None,
) -> Case | None:
    """An open case of the same category in the same grid, at the same landmark or within 200 m,
    reported in the last 72 hours."""
    assert u.grid is not None
    since = now - timedelta(hours=services.duplicate_window_hours)
    landmark = services.grids.landmark_key(u.landmark)
    for case in await cases.open_cases_in_grid(session, grid_id=u.grid.id, category=u.category, since=since):
        if landmark and landmark == services.grids.landmark_key(case.place_text):
            return case
        if None not in (lat, lon, case.lat, case.lon):
            if _metres(lat, lon, case.lat, case.lon) <= services.duplicate_radius_m:  # type: ignore[arg-type]
                return case
    return None


async def _repeat(
    session: AsyncSession,
    resident: Resident,
    original: Case,
    u: Understanding,
    text: str,
    now: datetime,
    outcome: Outcome,
    services: Services,
) -> str:
    """重复: recorded as its own (closed) report for the ledger; the resident follows the original."""
    repeat = await _new_case(session, resident, u, text, services, now, status=Status.DUPLICATE, duplicate_of=original)
    number = repeat.number
    await cases.follow(session, case=original, resident=resident, now=now)
    await _resident_event(session, original, resident, Action.REPEAT, now, note=f"{number}：{text[:200]}")
    outcome.case_id = repeat.id
    return m.DUPLICATE_LINKED.format(number=original.number, status=original.status)


async def _new_case(
    session: AsyncSession,
    resident: Resident,
    u: Understanding,
    text: str,
    services: Services,
    now: datetime,
    **extra: Any,
) -> Case:
    """A numbered case from what the message said (status, pin and link to an original in `extra`)."""
    return await new_case(
        session,
        services=services,
        now=now,
        category=u.category,
        confidence=u.confidence,
        description=text[:2000],
        urgent=u.urgent,
        resident=resident,
        place_text=u.place,
        **extra,
    )


async def new_case(session: AsyncSession, *, services: Services, now: datetime, **fields: Any) -> Case:
    """A case with the next number of the day (受理); `fields` as storage.cases.create_case takes them.
    Also how reports from other systems (Open311) enter."""
    number = await cases.next_case_number(session, now=now, zone=services.zone)
    return await cases.create_case(session, number=number, now=now, **fields)


async def route_report(
    session: AsyncSession, *, case: Case, grid: GridRef | None, services: Services, now: datetime
) -> Staff | None:
    """Route a report whose place is as known as it will get: to its grid's leader (or the nearest one
    above); without a grid, to the street level (街道) for dispatch by hand. Without a grid, a case
    already dispatched (an urgent one, sent up at once) stays where it is, and with no grid loaded at
    all nothing moves (it stays 待派遣 for a dispatcher)."""
    if grid is not None:
        return await route_case(session, case=case, grid=grid, services=services, now=now)
    root = services.grids.root()
    if root is None or case.status != Status.NEW:
        return None
    return await route_case(session, case=case, grid=root, services=services, now=now)


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine); plenty for "within 200 m"."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


async def _resident_event(
    session: AsyncSession,
    case: Case,
    resident: Resident,
    action: Action,
    now: datetime,
    *,
    note: str | None = None,
    media_id: str | None = None,
) -> None:
    await cases.add_event(
        session,
        case=case,
        action=action,
        actor_kind="resident",
        actor_id=resident.id,
        now=now,
        note=note,
        media_id=media_id,
    )


def _keep_pin(resident: Resident, msg: Inbound, now: datetime) -> None:
    resident.last_lat, resident.last_lon, resident.last_location_at = msg.lat, msg.lon, now


async def _original(session: AsyncSession, case: Case) -> Case:
    if case.duplicate_of_id is None:
        return case
    return await cases.get_case(session, case.duplicate_of_id) or case


async def _recent_case(
    session: AsyncSession, resident: Resident, services: Services, now: datetime, window: int | None = None
) -> Case | None:
    since = window_start(now, window if window is not None else services.merge_window_minutes)
    return await cases.latest_case_of_resident(session, resident_id=resident.id or 0, since=since)


async def _awaiting_place(session: AsyncSession, resident: Resident, services: Services, now: datetime) -> Case | None:
    """The case that asked "where is it?", while the answer can still come (urgent ones included)."""
    if resident.awaiting_place_case_id is None:
        return None
    case = await cases.get_case(session, resident.awaiting_place_case_id)
    fresh = case is not None and case.created_at >= window_start(now, services.place_window_minutes)
    if case is None or not fresh or case.status not in (Status.NEW, Status.DISPATCHED):
        resident.awaiting_place_case_id = None
        session.add(resident)
        return None
    return case


async def _place_found(
    session: AsyncSession,
    resident: Resident,
    case: Case,
    grid: GridRef | None,
    services: Services,
    now: datetime,
    outcome: Outcome,
) -> str:
    """The case now knows where it is (or never will): route it, to the street level if unmapped."""
    resident.awaiting_place_case_id = None
    session.add(resident)
    outcome.case_id = case.id
    await _resident_event(session, case, resident, Action.LOCATE, now, note=case.place_text)
    if grid is not None:
        return await _dispatch_reply(session, case, grid, services, now)
    root = services.grids.root()
    if root is None:  # no grid loaded at all: keep the case for a dispatcher
        session.add(case)
        return m.PLACE_ATTACHED.format(place=place_of(case), number=case.number)
    await route_report(session, case=case, grid=None, services=services, now=now)
    session.add(case)
    return m.CASE_TO_DISPATCHER.format(category=case.category, place=place_of(case), number=case.number, grid=root.name)


async def _dispatch_reply(session: AsyncSession, case: Case, grid: GridRef, services: Services, now: datetime) -> str:
    leader = await route_report(session, case=case, grid=grid, services=services, now=now)
    place = case.place_text or grid.name
    if leader is None:
        return m.CASE_TO_DISPATCHER.format(category=case.category, place=place, number=case.number, grid=grid.name)
    # With no leader of its own, the grid's case goes to the nearest level above (网格 → 社区 → 街道).
    owner = services.grids.refs.get(leader.grid_id, grid)
    reply = m.CASE_ROUTED.format(
        category=case.category, place=place, number=case.number, grid=owner.name, leader=leader.name
    )
    return reply + (m.CASE_ROUTED_URGENT_NOTE if case.urgent else "")


def _owner_name(services: Services, case: Case) -> str:
    ref = services.grids.refs.get(case.grid_id) if case.grid_id is not None else None
    return ref.name if ref else services.office_name


async def _attach_loose_photos(
    session: AsyncSession, resident: Resident, case: Case, services: Services, now: datetime
) -> None:
    photos = await inbound.loose_media(
        session, sender=resident.openid, since=window_start(now, services.place_window_minutes)
    )
    for photo in photos:
        await _resident_event(
            session,
            case,
            resident,
            Action.ATTACH,
            now,
            note=photo.payload.get("url"),
            media_id=photo.payload.get("media_id"),
        )
    await inbound.attach_to_case(session, row_ids=[p.id for p in photos if p.id is not None], case_id=case.id or 0)


async def dispatch_unplaced(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """Scheduled: a case whose resident never said where is not left waiting; the street level
    (街道) dispatches it by hand, and the resident is told."""
    root = services.grids.root()
    if root is None:
        return 0
    routed = 0
    for case_id in await cases.unplaced_before(session, before=window_start(now, services.place_window_minutes)):
        case = await cases.claim_unplaced(session, case_id=case_id, now=now)
        if case is None:
            continue
        await cases.add_event(
            session, case=case, action=Action.LOCATE, actor_kind="system", now=now, note=m.PLACE_MISSING_NOTE
        )
        await route_case(session, case=case, grid=root, services=services, now=now)
        await notify_residents(
            session,
            case=case,
            now=now,
            content=m.PUSH_PLACE_MISSING.format(number=case.number, grid=root.name),
        )
        routed += 1
    return routed
