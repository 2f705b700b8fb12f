"""The map of open cases (an inline SVG over the grid polygons: no map service) and grid
management: the definition exported and imported as the grid file's YAML."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import col, select

from bot.app import SERVICES, SETTINGS
from bot.console.auth import db, staff_of
from bot.console.pages import ROLE_NAMES, _now, _services, age_days, render
from handlers import console
from handlers import messages as m
from handlers.places import DEPARTMENT_LEVEL, GridIndex
from storage import grids
from storage.lifecycle import OPEN_STATUSES
from storage.models import Case, Staff

WIDTH, HEIGHT, PAD = 600, 600, 12
# Age of an open case → colour (days, colour, label), oldest band last.
AGE_BANDS = ((1, "#2e7d32", "1天内"), (3, "#f9a825", "1–3天"), (7, "#ef6c00", "3–7天"), (None, "#c62828", "7天以上"))


def age_colour(days: float) -> str:
    return next(colour for limit, colour, _ in AGE_BANDS if limit is None or days < limit)


async def case_map(request: web.Request) -> web.StreamResponse:
    """Open cases as points on the person's grid polygons, coloured by age."""
    services, staff, now, session = _services(request), staff_of(request), _now(request), db(request)
    below = set(services.grids.subtree(staff.grid_id))
    nodes = [n for n in await grids.all_nodes(session) if n.id in below and n.polygon]
    stmt = (
        select(Case)
        .where(console.in_scope(staff, services), col(Case.status).in_(list(OPEN_STATUSES)))
        .order_by(col(Case.created_at))
    )
    open_cases = list((await session.exec(stmt)).all())
    placed = [c for c in open_cases if c.lat is not None and c.lon is not None]
    lons = [p[0] for n in nodes for p in n.polygon or []] + [c.lon for c in placed if c.lon is not None]
    lats = [p[1] for n in nodes for p in n.polygon or []] + [c.lat for c in placed if c.lat is not None]
    shapes: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    if lons and lats:
        west, east, south, north = min(lons), max(lons), min(lats), max(lats)
        scale = min((WIDTH - 2 * PAD) / max(east - west, 1e-6), (HEIGHT - 2 * PAD) / max(north - south, 1e-6))

        def xy(lon: float, lat: float) -> tuple[float, float]:
            return round(PAD + (lon - west) * scale, 1), round(PAD + (north - lat) * scale, 1)

        for n in sorted(nodes, key=lambda n: n.path.count("/")):
            ring = " ".join(f"{x},{y}" for x, y in (xy(p[0], p[1]) for p in n.polygon or []))
            depth = n.path.count("/") - 2
            shapes.append({"points": ring, "name": n.name, "depth": depth})
        for c in placed:
            x, y = xy(c.lon or 0.0, c.lat or 0.0)
            days = age_days(now, c.created_at)
            points.append(
                {
                    "x": x,
                    "y": y,
                    "colour": age_colour(days),
                    "number": c.number,
                    "title": f"{c.number} {c.category} {days:.1f}天",
                }
            )
    unplaced = [
        {"number": c.number, "category": c.category, "colour": age_colour(age_days(now, c.created_at))}
        for c in open_cases
        if c.lat is None or c.lon is None
    ]
    return render(
        request,
        "map.html",
        {
            "width": WIDTH,
            "height": HEIGHT,
            "shapes": shapes,
            "points": points,
            "unplaced": unplaced,
            "bands": [(colour, label) for _, colour, label in AGE_BANDS],
        },
    )


def _top_dispatcher(request: web.Request) -> bool:
    staff = staff_of(request)
    return staff.role == "dispatcher" and len(_services(request).grids.line(staff.grid_id)) == 1


async def grid_page(request: web.Request, *, message: str | None = None, status: int = 200) -> web.Response:
    """网格与人员: the person's part of the hierarchy and its staff; export / import at the top."""
    services, staff, session = _services(request), staff_of(request), db(request)
    below = services.grids.subtree(staff.grid_id)
    refs = sorted((services.grids.refs[i] for i in below), key=lambda r: (r.depth, r.id))
    people = (
        await session.exec(
            select(Staff).where(col(Staff.grid_id).in_(below), col(Staff.active).is_(True)).order_by(col(Staff.id))
        )
    ).all()
    return render(
        request,
        "grid.html",
        {
            "nodes": [{"name": r.name, "level": r.level, "depth": r.depth, "code": r.code} for r in refs],
            "people": [
                {
                    "key": p.key,
                    "name": p.name,
                    "role": ROLE_NAMES.get(p.role, p.role),
                    "grid": services.grids.refs[p.grid_id].name if p.grid_id in services.grids.refs else "—",
                    "password": p.password_hash is not None,
                }
                for p in people
            ],
            "manage": _top_dispatcher(request),
            "message": message,
            "department": DEPARTMENT_LEVEL,
        },
        status=status,
    )


async def grid_view(request: web.Request) -> web.StreamResponse:
    return await grid_page(request)


async def grid_export(request: web.Request) -> web.StreamResponse:
    if not _top_dispatcher(request):
        raise web.HTTPNotFound()
    services = _services(request)
    office = {"name": services.office_name, "timezone": request.config_dict[SETTINGS].timezone}
    grid = await grids.export_grid(db(request), office=office)
    return web.Response(
        text=grids.dump_grid_file(grid),
        content_type="application/x-yaml",
        headers={"Content-Disposition": 'attachment; filename="grid.yaml"'},
    )


async def grid_import(request: web.Request) -> web.StreamResponse:
    """Upload a grid file: nodes and staff inserted or updated by code / key, the index rebuilt."""
    if not _top_dispatcher(request):
        return await grid_page(request, message=m.CONSOLE_GRID_TOP_ONLY, status=403)
    form = await request.post()
    upload = form.get("file")
    raw = upload.file.read() if isinstance(upload, web.FileField) else b""
    session = db(request)
    try:
        grid = grids.parse_grid_text(raw.decode("utf-8"))
        async with session.begin_nested():  # a bad file leaves the grid as it was
            nodes, staff = await grids.import_grid(session, grid)
    except (grids.GridFileError, UnicodeDecodeError) as exc:
        return await grid_page(request, message=m.CONSOLE_GRID_BAD_FILE.format(reason=exc), status=400)
    request.config_dict[SERVICES].grids = GridIndex(await grids.all_nodes(session))
    return await grid_page(request, message=m.CONSOLE_GRID_IMPORTED.format(nodes=nodes, staff=staff))
