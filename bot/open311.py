"""Open311 GeoReport v2 transport: routes, parsing of query strings and form posts, XML/JSON out.

The spec: http://wiki.open311.org/GeoReport_v2 (XML is required, JSON optional; both served here).

    GET  /open311/v2/services.{xml,json}              our categories as services
    GET  /open311/v2/services/{code}.{xml,json}       a service definition (no attributes: metadata false)
    GET  /open311/v2/requests.{xml,json}              cases, filtered: service_request_id (overrides the
                                                      rest), service_code, start_date, end_date, status;
                                                      the last 90 days and at most 1000 by default
    POST /open311/v2/requests.{xml,json}              file a case (api_key, service_code, and lat+long,
                                                      address_string or address_id)
    GET  /open311/v2/requests/{id}.{xml,json}         one case, by its number (G20261122-0001)
    GET  /open311/discovery.{xml,json}                the spec's service discovery: contact, where
                                                      to ask for a key, and the v2 endpoint

A POST may carry an Idempotency-Key header (the IETF httpapi draft; GeoReport v2 has none): a retry
with the same key gets the same service_request_id, and the key reused for a different request is
a 422. Without the header, the same request from the same api_key within 10 minutes is taken as a
retry too (handlers/open311.py says what "the same" is).

Errors come in the spec's shape (<errors><error><code/><description/></error></errors>, or a JSON
list of {code, description}) with HTTP 400 for a request we cannot fulfil, 403 for a missing or
wrong api_key, 404 for what does not exist (an unknown format extension included). Datetimes are
W3C/ISO 8601 with the office's offset. jurisdiction_id is accepted and ignored: one jurisdiction.
What the requests mean is handlers/open311.py's business.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.clock import Clock
from handlers import messages as m
from handlers import open311 as o
from handlers.context import Services
from storage.db import SessionFactory, transaction

log = logging.getLogger("gridbot.open311")

PREFIX = "/open311/v2"
DISCOVERY = "/open311/discovery.{format}"
FORMATS = ("xml", "json")
CONTENT_TYPES = ("text/xml", "application/json")
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# When the endpoints below last changed, as discovery reports it (bump it with them).
CHANGESET = "2026-11-25T00:00:00Z"
IDEMPOTENCY_KEY_LIMIT = 255
# Longest accepted value of each POST field (what the tables hold; description: the spec's 4000).
LIMITS = {
    "description": o.DESCRIPTION_LIMIT,
    "address_string": 500,
    "address_id": 100,
    "account_id": 100,
    "first_name": 100,
    "last_name": 100,
    "email": 200,
    "phone": 40,
    "device_id": 200,
    "media_url": 1000,
}
MAX_IDS = o.MAX_RESULTS
# Characters XML 1.0 cannot carry at all (a stray control character in a pasted message).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_dumps = partial(json.dumps, ensure_ascii=False)


@dataclass(frozen=True)
class Discovery:
    """What /open311/discovery says besides the endpoint: who to contact, where keys come from, the
    endpoint's public URL (empty: this request's own origin) and whether it is production or test."""

    contact: str = ""
    key_service: str = ""
    url: str = ""
    production: bool = True


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class Open311API:
    """The endpoints, over the app's database, services and clock. `on_commit` is called after a POST
    committed pushes to the outbox (the delivery worker's kick)."""

    def __init__(
        self,
        factory: SessionFactory,
        services: Services,
        clock: Clock,
        *,
        api_keys: Iterable[str],
        public_reads: bool,
        on_commit: Callable[[], None],
        discovery: Discovery | None = None,
    ) -> None:
        self.discovery = discovery or Discovery()
        self.factory = factory
        self.services = services
        self.clock = clock
        self.api_keys = tuple(api_keys)
        self.public_reads = public_reads
        self.on_commit = on_commit

    async def service_list(self, request: web.Request) -> web.Response:
        fmt = _format(request)
        rows = [_service_row(s) for s in o.service_list(self.services.classifier)]
        return _render(fmt, "services", "service", rows)

    async def service_definition(self, request: web.Request) -> web.Response:
        fmt = _format(request)
        code = request.match_info["code"]
        service = o.find_service(self.services.classifier, code)
        if service is None:
            raise Open311Error(404, m.OPEN311_ERR_UNKNOWN_SERVICE.format(code=code))
        if fmt == "json":
            return _json({"service_code": service.code, "attributes": []})
        root = ET.Element("service_definition")
        ET.SubElement(root, "service_code").text = service.code
        ET.SubElement(root, "attributes")
        return _xml(root)

    async def request_list(self, request: web.Request) -> web.Response:
        fmt = _format(request)
        self._check_read(request.query)
        query = _parse_query(request.query)
        try:
            async with transaction(self.factory) as session:
                views = await o.find_requests(session, query=query, services=self.services, now=self.clock.now())
        except o.BadRequest as exc:
            raise Open311Error(400, str(exc)) from None
        return _render(fmt, "service_requests", "request", [_request_row(v) for v in views])

    async def one_request(self, request: web.Request) -> web.Response:
        fmt = _format(request)
        self._check_read(request.query)
        number = request.match_info["id"]
        async with transaction(self.factory) as session:
            view = None if "\x00" in number else await o.find_request(session, number=number, services=self.services)
        if view is None:
            raise Open311Error(404, m.OPEN311_ERR_NOT_FOUND.format(id=number))
        return _render(fmt, "service_requests", "request", [_request_row(view)])

    async def create_request(self, request: web.Request) -> web.Response:
        fmt = _format(request)
        try:
            form = await request.post()
        except (UnicodeDecodeError, ValueError, web.HTTPRequestEntityTooLarge):
            raise Open311Error(400, m.OPEN311_ERR_BAD_BODY) from None
        key = _text(form, "api_key") or _text(request.query, "api_key")
        client = self._client(key)
        new = _parse_post(form, self.services, client, _idempotency_key(request))
        created = await self._submit(new)
        if created.repeated:
            log.info("open311 request repeated", extra={"case": created.number, "client": client})
        else:
            self.on_commit()
            log.info("open311 request filed", extra={"case": created.number, "client": client})
        row = {
            "service_request_id": created.number,
            "service_notice": created.service_notice,
            "account_id": created.account_id,
        }
        return _render(fmt, "service_requests", "request", [row])

    async def _submit(self, new: o.NewRequest) -> o.Created:
        """File it; two POSTs with one Idempotency-Key racing: the loser's insert breaks the unique
        key, and its second attempt finds the winner's case."""
        for attempt in (1, 2):
            try:
                async with transaction(self.factory, durable=True) as session:  # the client is told its id
                    return await o.submit(session, request=new, services=self.services, now=self.clock.now())
            except o.KeyReused:
                raise Open311Error(422, m.OPEN311_ERR_KEY_REUSED) from None
            except IntegrityError:
                if attempt == 2 or new.idempotency_key is None:
                    log.exception("cannot store open311 request")
                    raise Open311Error(503, m.OPEN311_ERR_STORAGE) from None
            except (SQLAlchemyError, OSError):
                log.exception("cannot store open311 request")
                raise Open311Error(503, m.OPEN311_ERR_STORAGE) from None
        raise AssertionError("unreachable")

    async def discover(self, request: web.Request) -> web.Response:
        """The spec's discovery document: one endpoint, GeoReport v2, both formats."""
        fmt = _format(request)
        d = self.discovery
        url = d.url or f"{request.scheme}://{request.host}{PREFIX}"
        kind = "production" if d.production else "test"
        if fmt == "json":
            endpoint = {
                "specification": SPECIFICATION,
                "url": url,
                "changeset": CHANGESET,
                "type": kind,
                "formats": list(CONTENT_TYPES),
            }
            return _json(
                {"changeset": CHANGESET, "contact": d.contact, "key_service": d.key_service, "endpoints": [endpoint]}
            )
        root = ET.Element("discovery")
        for name, value in (("changeset", CHANGESET), ("contact", d.contact), ("key_service", d.key_service)):
            ET.SubElement(root, name).text = value
        element = ET.SubElement(ET.SubElement(root, "endpoints"), "endpoint")
        for name, value in (("specification", SPECIFICATION), ("url", url), ("changeset", CHANGESET), ("type", kind)):
            ET.SubElement(element, name).text = value
        formats = ET.SubElement(element, "formats")
        for content_type in CONTENT_TYPES:
            ET.SubElement(formats, "format").text = content_type
        return _xml(root)

    def _client(self, key: str | None) -> str:
        """The API key's fingerprint, or 403: POST is off without configured keys."""
        if not self.api_keys:
            raise Open311Error(403, m.OPEN311_ERR_POST_OFF)
        if key is None or not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.api_keys):
            raise Open311Error(403, m.OPEN311_ERR_API_KEY)
        return o.client_of(key)

    def _check_read(self, query: MultiMapping[str]) -> None:
        if self.public_reads:
            return
        key = _text(query, "api_key")
        if key is None or not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.api_keys):
            raise Open311Error(403, m.OPEN311_ERR_READ_KEY)


def add_routes(router: web.UrlDispatcher, api: Callable[[web.Request], Open311API]) -> None:
    """The GeoReport v2 endpoints under /open311/v2; `api` finds the Open311API for a request."""

    def endpoint(method: Callable[[Open311API], Any]) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            try:
                response: web.Response = await method(api(request))(request)
            except Open311Error as exc:
                return _error(_format_or_xml(request), exc.status, exc.description)
            return response

        return handle

    router.add_get(PREFIX + "/services.{format}", endpoint(lambda a: a.service_list))
    router.add_get(PREFIX + "/services/{code}.{format}", endpoint(lambda a: a.service_definition))
    router.add_get(PREFIX + "/requests.{format}", endpoint(lambda a: a.request_list))
    router.add_post(PREFIX + "/requests.{format}", endpoint(lambda a: a.create_request))
    router.add_get(PREFIX + "/requests/{id}.{format}", endpoint(lambda a: a.one_request))
    router.add_route("*", PREFIX + "/{tail:.*}", _not_found)
    router.add_get(DISCOVERY, endpoint(lambda a: a.discover))


async def _not_found(request: web.Request) -> web.Response:
    return _error(_format_or_xml(request), 404, m.OPEN311_ERR_NO_RESOURCE.format(path=request.path))


# --- parsing --------------------------------------------------------------------------------------


def _format(request: web.Request) -> str:
    fmt = request.match_info.get("format", "")
    if fmt not in FORMATS:
        raise Open311Error(404, m.OPEN311_ERR_NO_RESOURCE.format(path=request.path))
    return fmt


def _format_or_xml(request: web.Request) -> str:
    """Errors come in the format asked for; XML (the required one) when that is not one we serve."""
    fmt = request.match_info.get("format") or request.path.rpartition(".")[2]
    return fmt if fmt in FORMATS else "xml"


def _text(values: MultiMapping[Any], name: str) -> str | None:
    """A field's value, stripped; absent, empty and non-text (a file) are all None, as the spec's
    "optional" asks."""
    value = values.get(name)
    if not isinstance(value, str):
        return None
    return _no_nul(name, value).strip() or None


def _no_nul(name: str, value: str) -> str:
    """PostgreSQL's text cannot hold NUL: refused here (400), not by the database (503, retried)."""
    if "\x00" in value:
        raise Open311Error(400, m.OPEN311_ERR_NUL.format(field=name))
    return value


def _list(values: MultiMapping[str], name: str) -> tuple[str, ...]:
    """A field that "can be declared multiple times, comma delimited"."""
    items = (p.strip() for v in values.getall(name, []) for p in _no_nul(name, v).split(","))
    return tuple(dict.fromkeys(p for p in items if p))


def _datetime(values: MultiMapping[str], name: str) -> datetime | None:
    value = _text(values, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value:
        raise Open311Error(400, m.OPEN311_ERR_DATE.format(field=name))
    return parsed


def _parse_query(query: MultiMapping[str]) -> o.Query:
    statuses = _list(query, "status")
    for status in statuses:
        if status not in ("open", "closed"):
            raise Open311Error(400, m.OPEN311_ERR_STATUS.format(value=status))
    return o.Query(
        ids=_list(query, "service_request_id")[:MAX_IDS],
        codes=_list(query, "service_code"),
        statuses=statuses,
        start=_datetime(query, "start_date"),
        end=_datetime(query, "end_date"),
    )


def _idempotency_key(request: web.Request) -> str | None:
    """The Idempotency-Key header: a structured-field string ("…"), a bare token accepted too."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not value or len(value) > IDEMPOTENCY_KEY_LIMIT or _NOT_XML.search(value):
        raise Open311Error(400, m.OPEN311_ERR_IDEMPOTENCY_KEY.format(limit=IDEMPOTENCY_KEY_LIMIT))
    return value


def _parse_post(
    form: MultiMapping[Any], services: Services, client: str, idempotency_key: str | None = None
) -> o.NewRequest:
    fields = {name: _text(form, name) for name in (*LIMITS, "service_code", "lat", "long")}
    for name, limit in LIMITS.items():
        if (value := fields[name]) is not None and len(value) > limit:
            raise Open311Error(400, m.OPEN311_ERR_TOO_LONG.format(field=name, limit=limit))
    code = fields["service_code"]
    if code is None:
        raise Open311Error(400, m.OPEN311_ERR_NO_SERVICE_CODE)
    service = o.find_service(services.classifier, code)
    if service is None:
        raise Open311Error(404, m.OPEN311_ERR_UNKNOWN_SERVICE.format(code=code))
    lat, lon = _coordinates(fields["lat"], fields["long"])
    if lat is None and fields["address_string"] is None and fields["address_id"] is None:
        raise Open311Error(400, m.OPEN311_ERR_NO_LOCATION)
    return o.NewRequest(
        service=service,
        requester=o.Requester(
            client=client,
            account_id=fields["account_id"],
            first_name=fields["first_name"],
            last_name=fields["last_name"],
            email=fields["email"],
            phone=fields["phone"],
            device_id=fields["device_id"],
        ),
        description=fields["description"] or "",
        lat=lat,
        lon=lon,
        address_string=fields["address_string"],
        address_id=fields["address_id"],
        media_url=fields["media_url"],
        idempotency_key=idempotency_key,
    )


def _coordinates(lat: str | None, lon: str | None) -> tuple[float | None, float | None]:
    """Both or neither; WGS84 degrees in range."""
    if lat is None and lon is None:
        return None, None
    try:
        y, x = float(lat or "nan"), float(lon or "nan")
    except ValueError:
        y = x = math.nan
    if not (-90 <= y <= 90 and -180 <= x <= 180):  # NaN fails both
        raise Open311Error(400, m.OPEN311_ERR_LAT_LONG)
    return y, x


# --- rendering ------------------------------------------------------------------------------------


def _service_row(service: o.Service) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "service_name": service.name,
        "description": service.description,
        "metadata": service.metadata,
        "type": service.type,
        "keywords": ", ".join(service.keywords),
        "group": service.group,
    }


def _request_row(view: o.RequestView) -> dict[str, Any]:
    return asdict(view)


def _render(fmt: str, root: str, item: str, rows: list[dict[str, Any]]) -> web.Response:
    """A list as the spec shapes it: <root><item>…</item></root>, or a JSON array of objects."""
    if fmt == "json":
        return _json(rows)
    tree = ET.Element(root)
    for row in rows:
        element = ET.SubElement(tree, item)
        for name, value in row.items():
            ET.SubElement(element, name).text = _xml_text(value)
    return _xml(tree)


def _xml_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _xml(root: ET.Element, status: int = 200) -> web.Response:
    body = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
    return web.Response(status=status, text=body, content_type="text/xml", charset="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps, content_type="application/json")


def _error(fmt: str, status: int, description: str) -> web.Response:
    if fmt == "json":
        return _json([{"code": status, "description": description}], status=status)
    root = ET.Element("errors")
    error = ET.SubElement(root, "error")
    ET.SubElement(error, "code").text = str(status)
    ET.SubElement(error, "description").text = description
    return _xml(root, status=status)
