"""Open311 (GeoReport v2, http://wiki.open311.org/GeoReport_v2): what other systems see and do.

Our categories (事项分类) are the services; a case (工单) is a service request, named by its case
number. A request filed through the API is a report like a resident's WeChat message: numbered,
placed, routed to the grid's leader with the same card, deadline and follow-up. Its requester is
not a WeChat user: the case has no resident (so nothing is ever pushed to them, and a 办结 closes
it without asking for a rating); who they said they are is kept in `open311_request`, for the
office only. The wire format (XML/JSON, errors) is bot/open311.py's business.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.classify import Classifier
from handlers.context import Services
from handlers.deadlines import show
from handlers.intake import new_case, route_report
from handlers.places import gcj02_to_wgs84, wgs84_to_gcj02
from handlers.resident import PUBLIC_NOTES
from handlers.text import mask_phones_in
from handlers.understand import understand
from storage import open311
from storage.lifecycle import OPEN_STATUSES, Status
from storage.models import Case, Open311Request

# GET requests: the spec's default window and page.
WINDOW = timedelta(days=90)
MAX_RESULTS = 1000
DESCRIPTION_LIMIT = 4000  # the spec's limit on a request's description
# Coordinates are published to 3 decimals (about 100 m): a resident's pin may be their front door.
COORDINATE_DECIMALS = 3


class BadRequest(Exception):
    """The request cannot be fulfilled as asked (HTTP 400); the message says why, for the user."""


@dataclass(frozen=True)
class Service:
    """One category as an Open311 service. Every request is realtime: its number comes back at once."""

    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    metadata: bool = False  # no extra attributes: the description and the place are all we ask
    type: str = "realtime"


def service_list(classifier: Classifier) -> list[Service]:
    """Every category a case may be filed under, with the code the categories file gives it."""
    table = {c.name: c for c in classifier.table.categories}
    services = []
    for name in classifier.category_names():
        category = table.get(name)
        code = category.code if category and category.code else _derived_code(name)
        services.append(
            Service(
                code=code,
                name=name,
                description=(category.description if category else None) or name,
                group=(category.group if category else None) or name,
                keywords=tuple(word for word, _ in category.keywords[:8]) if category else (),
            )
        )
    return services


def find_service(classifier: Classifier, code: str) -> Service | None:
    return next((s for s in service_list(classifier) if s.code == code), None)


def _derived_code(name: str) -> str:
    """A category without a code in the file (or known only to the trained model) still gets a stable
    one: it changes only if the category is renamed."""
    return "c" + hashlib.sha256(name.encode()).hexdigest()[:8]


# --- POST requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requester:
    """Who filed it, as they said (all optional); `client` names the API key, never holding it."""

    client: str
    account_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class NewRequest:
    """A POST, checked: a known service and at least one location (lat/long in WGS84, as the spec says)."""

    service: Service
    requester: Requester
    description: str = ""
    lat: float | None = None
    lon: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    media_url: str | None = None
    # The client's Idempotency-Key header (IETF draft-ietf-httpapi-idempotency-key-header), if sent.
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Created:
    number: str
    service_notice: str
    account_id: str | None
    # True when this POST repeated an earlier one and no new case was filed.
    repeated: bool = False


class KeyReused(Exception):
    """An Idempotency-Key already used for a different request (the draft's 422)."""


# A POST without an Idempotency-Key that repeats one from the same client this recently (same
# service, description, place, requester and photo) is taken as its retry, not as a new report.
REPEAT_WINDOW = timedelta(minutes=10)


def fingerprint(request: NewRequest) -> str:
    """What makes two POSTs the same request: the SHA-256 of the fields the client chose."""
    who = request.requester
    fields = [
        who.client,
        request.service.code,
        request.description,
        request.lat,
        request.lon,
        request.address_string,
        request.address_id,
        who.email,
        who.device_id,
        request.media_url,
    ]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def client_of(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


async def submit(session: AsyncSession, *, request: NewRequest, services: Services, now: datetime) -> Created:
    """受理 a request: a case in the service's category, placed by the pin (converted to our maps'
    GCJ-02) or the address, and routed as a WeChat report is; an unmapped place goes to the street
    level for dispatch by hand. A retry (the same Idempotency-Key, or without one the same request
    within REPEAT_WINDOW) files nothing and answers with the case the first POST filed."""
    posted = fingerprint(request)
    who = request.requester
    if request.idempotency_key is not None:
        earlier = await open311.by_idempotency_key(session, client=who.client, key=request.idempotency_key)
        if earlier is not None and earlier[0].fingerprint != posted:
            raise KeyReused(request.idempotency_key)
    else:
        earlier = await open311.by_fingerprint(
            session, client=who.client, fingerprint=posted, since=now - REPEAT_WINDOW
        )
    if earlier is not None:
        filed, case = earlier
        return Created(case.number, _notice(case, services) or m.OPEN311_NOTICE_WAITING, filed.account_id, True)
    lat = lon = None
    if request.lat is not None and request.lon is not None:
        lat, lon = wgs84_to_gcj02(request.lat, request.lon)
    text = f"{request.address_string or ''}\n{request.description}"
    u = understand(text, classifier=services.classifier, grids=services.grids, lat=lat, lon=lon)
    pin = f"{lat:.5f},{lon:.5f}" if lat is not None and lon is not None else None
    place = request.address_string or u.place or pin
    case = await new_case(
        session,
        services=services,
        now=now,
        category=request.service.name,
        confidence=1.0,  # the requester chose the service
        description=(request.description or request.service.name)[:DESCRIPTION_LIMIT],
        urgent=services.classifier.is_urgent(request.description),
        resident=None,
        reporter_kind="open311",
        place_text=place[:500] if place else None,
        lat=lat,
        lon=lon,
    )
    assert case.id is not None
    open311.record_request(
        session,
        Open311Request(
            case_id=case.id,
            client=who.client,
            account_id=who.account_id,
            first_name=who.first_name,
            last_name=who.last_name,
            email=who.email,
            phone=who.phone,
            device_id=who.device_id,
            address_id=request.address_id,
            media_url=request.media_url,
            idempotency_key=request.idempotency_key,
            fingerprint=posted,
            filed_at=now,
        ),
    )
    await route_report(session, case=case, grid=u.grid, services=services, now=now)
    return Created(case.number, _notice(case, services) or m.OPEN311_NOTICE_WAITING, who.account_id)


# --- GET requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """GET requests' filters: ids override the rest; empty tuples mean "any"."""

    ids: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # open | closed
    start: datetime | None = None
    end: datetime | None = None


def window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The span of requested_datetime searched: at most 90 days, the latest 90 by default; one end
    given, the other is 90 days from it (never past now)."""
    if end is None:
        end = min(start + WINDOW, now) if start is not None else now
    if start is None:
        start = end - WINDOW
    if start > end or end - start > WINDOW:
        raise BadRequest(m.OPEN311_ERR_RANGE)
    return start, end


@dataclass(frozen=True)
class RequestView:
    """One case as a service request, every field as the spec names it (None: not known)."""

    service_request_id: str
    status: str
    status_notes: str | None
    service_name: str
    service_code: str
    description: str
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


async def find_requests(session: AsyncSession, *, query: Query, services: Services, now: datetime) -> list[RequestView]:
    if query.ids:
        found = await open311.find_cases(session, numbers=query.ids, limit=MAX_RESULTS)
    else:
        start, end = window(query.start, query.end, now)
        categories = None
        if query.codes:
            by_code = {s.code: s.name for s in service_list(services.classifier)}
            categories = [by_code[c] for c in query.codes if c in by_code]
        found = await open311.find_cases(
            session,
            categories=categories,
            statuses=_statuses(query.statuses),
            since=start,
            until=end,
            limit=MAX_RESULTS,
        )
    return await _views(session, found, services)


async def find_request(session: AsyncSession, *, number: str, services: Services) -> RequestView | None:
    found = await open311.find_cases(session, numbers=[number], limit=1)
    views = await _views(session, found, services)
    return views[0] if views else None


def is_open(status: str) -> bool:
    """Open311 knows open (reported) and closed (resolved); 已办结 and 待评价 count as resolved."""
    return status in OPEN_STATUSES


def _statuses(wanted: tuple[str, ...]) -> frozenset[Status] | None:
    if not wanted or set(wanted) == {"open", "closed"}:
        return None
    return OPEN_STATUSES if "open" in wanted else frozenset(Status) - OPEN_STATUSES


async def _views(session: AsyncSession, found: list[Case], services: Services) -> list[RequestView]:
    ids = [c.id for c in found if c.id is not None]
    notes = await open311.latest_notes(session, case_ids=ids, actions=PUBLIC_NOTES)
    filed = await open311.requests_for(session, case_ids=ids)
    codes = {s.name: s.code for s in service_list(services.classifier)}
    views = []
    for case in found:
        assert case.id is not None
        via_api = filed.get(case.id)
        note = notes.get(case.id)
        lat = lon = None
        if case.lat is not None and case.lon is not None:
            wlat, wlon = gcj02_to_wgs84(case.lat, case.lon)
            lat, lon = round(wlat, COORDINATE_DECIMALS), round(wlon, COORDINATE_DECIMALS)
        grid = services.grids.refs.get(case.grid_id) if case.grid_id is not None else None
        views.append(
            RequestView(
                service_request_id=case.number,
                status="open" if is_open(case.status) else "closed",
                status_notes=m.OPEN311_STATUS_NOTE.format(status=case.status, note=mask_phones_in(note[:200]))
                if note
                else case.status,
                service_name=case.category,
                service_code=codes.get(case.category) or _derived_code(case.category),
                description=mask_phones_in(case.description),
                agency_responsible=grid.name if grid else None,
                service_notice=_notice(case, services),
                requested_datetime=w3c(case.created_at, services.zone),
                updated_datetime=w3c(case.updated_at, services.zone),
                expected_datetime=w3c(case.due_at, services.zone) if case.due_at else None,
                address=mask_phones_in(case.place_text) if case.place_text else None,
                address_id=via_api.address_id if via_api else None,
                zipcode=None,
                lat=lat,
                long=lon,
                # WeChat photos are the resident's, behind our media store: only a URL the requester gave.
                media_url=via_api.media_url if via_api else None,
            )
        )
    return views


def _notice(case: Case, services: Services) -> str | None:
    """What to expect: who handles it and by when, while it is open."""
    if not is_open(case.status):
        return None
    grid = services.grids.refs.get(case.grid_id) if case.grid_id is not None else None
    if grid is None or case.due_at is None or case.status == Status.NEW:
        return m.OPEN311_NOTICE_WAITING
    notice = m.OPEN311_NOTICE_ROUTED.format(grid=grid.name, due=show(case.due_at, services.zone))
    return notice + (m.OPEN311_NOTICE_URGENT if case.urgent else "")


def w3c(at: datetime, zone: ZoneInfo) -> str:
    """The spec's datetime: ISO 8601 to the second, in office time with its offset (2026-11-22T10:00:00+08:00)."""
    return at.astimezone(zone).isoformat(timespec="seconds")
