"""Report intake (受理): residents' texts, voice, photos and location pins become routed cases."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.context import Outcome, Services
from handlers.dispatching import notify_resident, place_of, route_case
from handlers.places import GridRef
from handlers.routing import Router, event, has_text, kind
from handlers.types import Inbound
from storage import cases, inbound
from storage.cases import window_start
from storage.lifecycle import Action, Status
from storage.models import Case, Resident

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
    case = await _awaiting_place(session, resident, services, now)
    if case is None:
        _keep_pin(resident, msg, now)
        session.add(resident)
        return m.LOCATION_KEPT.format(label=f"（{msg.label}）" if msg.label else "")
    case.lat, case.lon = msg.lat, msg.lon
    case.place_text = case.place_text or msg.label or f"{msg.lat:.5f},{msg.lon:.5f}"
    grid = services.grids.locate_point(msg.lat, msg.lon)
    return await _place_found(session, resident, case, grid, services, now, outcome)


@router.message(kind("voice"), has_text)
async def on_voice(
    msg: Inbound,
    resident: Resident,
    session: AsyncSession,
    services: Services,
    now: datetime,
    outcome: Outcome,
) -> str:
    return await on_text(msg, resident, session, services, now, outcome)


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
    since = window_start(now, services.place_window_minutes)
    case = await cases.latest_case_of_resident(session, resident_id=resident.id or 0, since=since)
    if case is None:
        return m.PHOTO_KEPT  # the inbound log keeps it; the next report picks it up
    await _resident_event(session, case, resident, Action.ATTACH, now, note=msg.url, media_id=msg.media_id)
    outcome.case_id = case.id
    return m.PHOTO_ATTACHED.format(number=case.number)


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
) -> str:
    text = (msg.text or "").strip()
    waiting = await _awaiting_place(session, resident, services, now)
    if waiting is not None:
        # The answer to "where is it?": a place name, or at worst an address we cannot map.
        waiting.place_text = text[:500]
        found = services.grids.locate_text(text)
        return await _place_found(
            session, resident, waiting, found.grid if found else None, services, now, outcome
        )

    category, _score = services.catalog.classify(text)
    grid: GridRef | None = None
    place_text: str | None = None
    lat = lon = None
    pin_fresh = resident.last_location_at is not None and resident.last_location_at >= window_start(
        now, services.place_window_minutes
    )
    if pin_fresh and resident.last_lat is not None and resident.last_lon is not None:
        # The pin wins over text: it is where the resident stood.
        lat, lon = resident.last_lat, resident.last_lon
        grid = services.grids.locate_point(lat, lon)
    found = services.grids.locate_text(text)
    if found is not None:
        place_text = found.phrase
        grid = grid or found.grid

    number = await cases.next_case_number(session, now=now, zone=services.zone)
    case = await cases.create_case(
        session,
        number=number,
        category=category,
        description=text[:2000],
        urgent=services.catalog.is_urgent(text),
        resident=resident,
        now=now,
        place_text=place_text,
        lat=lat,
        lon=lon,
    )
    outcome.case_id = case.id
    await _attach_loose_photos(session, resident, case, services, now)
    if grid is None:
        resident.awaiting_place_case_id = case.id
        session.add(resident)
        reply = m.CASE_NEEDS_PLACE.format(category=category, number=number)
        return reply + (m.CASE_ROUTED_URGENT_NOTE if case.urgent else "")
    return await _dispatch_reply(session, case, grid, services, now)


@router.message(kind("text"))
async def on_empty_text() -> str:
    return m.EMPTY_TEXT


@router.message()
async def on_unknown() -> str:
    return m.UNSUPPORTED


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


async def _awaiting_place(
    session: AsyncSession, resident: Resident, services: Services, now: datetime
) -> Case | None:
    if resident.awaiting_place_case_id is None:
        return None
    case = await cases.get_case(session, resident.awaiting_place_case_id)
    if (
        case is None
        or case.status != Status.NEW
        or case.created_at < window_start(now, services.place_window_minutes)
    ):
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
    await route_case(session, case=case, grid=root, services=services, now=now)
    return m.CASE_TO_DISPATCHER.format(
        category=case.category, place=place_of(case), number=case.number, grid=root.name
    )


async def _dispatch_reply(
    session: AsyncSession, case: Case, grid: GridRef, services: Services, now: datetime
) -> str:
    leader = await route_case(session, case=case, grid=grid, services=services, now=now)
    place = case.place_text or grid.name
    if leader is None:
        return m.CASE_TO_DISPATCHER.format(
            category=case.category, place=place, number=case.number, grid=grid.name
        )
    # With no leader of its own, the grid's case goes to the nearest level above (网格 → 社区 → 街道).
    owner = services.grids.refs.get(leader.grid_id, grid)
    reply = m.CASE_ROUTED.format(
        category=case.category, place=place, number=case.number, grid=owner.name, leader=leader.name
    )
    return reply + (m.CASE_ROUTED_URGENT_NOTE if case.urgent else "")


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
    await inbound.attach_to_case(
        session, row_ids=[p.id for p in photos if p.id is not None], case_id=case.id or 0
    )


async def dispatch_unplaced(session: AsyncSession, *, services: Services, now: datetime) -> int:
    """Scheduled: a case whose resident never said where is not left waiting; the street level
    (街道) dispatches it by hand, and the resident is told."""
    root = services.grids.root()
    if root is None:
        return 0
    routed = 0
    for case_id in await cases.unplaced_before(
        session, before=window_start(now, services.place_window_minutes)
    ):
        case = await cases.claim_unplaced(session, case_id=case_id, now=now)
        if case is None:
            continue
        await cases.add_event(
            session, case=case, action=Action.LOCATE, actor_kind="system", now=now, note=m.PLACE_MISSING_NOTE
        )
        await route_case(session, case=case, grid=root, services=services, now=now)
        resident = await session.get(Resident, case.resident_id) if case.resident_id else None
        if resident is not None:
            notify_resident(
                session,
                openid=resident.openid,
                case=case,
                now=now,
                content=m.PUSH_PLACE_MISSING.format(number=case.number, grid=root.name),
            )
        routed += 1
    return routed
