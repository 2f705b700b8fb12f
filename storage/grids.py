"""The grid hierarchy and its staff: importing a grid file, and the queries routing needs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import GridNode, Staff


class GridFileError(Exception):
    """A grid definition that cannot be imported; the message says where."""


class NodeSpec(BaseModel):
    code: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    level: str = Field(min_length=1, max_length=20)
    aliases: list[str] = []
    landmarks: list[str] = []
    polygon: list[tuple[float, float]] | None = None
    # The grid group's WeCom robot: the key in its webhook URL (…/webhook/send?key=KEY).
    robot_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,200}$")
    children: list[NodeSpec] = []

    @field_validator("polygon")
    @classmethod
    def _ring(cls, value: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if value is not None and len(value) < 3:
            raise ValueError("a polygon needs at least 3 points [lng, lat]")
        return value


class StaffSpec(BaseModel):
    key: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    # leader: 网格员/网格长; dispatcher: 调度员; inspector: 核查员 (confirms 办结 where a category needs it)
    role: Literal["leader", "dispatcher", "inspector"]
    grid: str
    phone: str | None = None
    wechat_openid: str | None = None
    wecom_userid: str | None = None
    # Where their pushes go; by default WeCom when they have only a WeCom user id.
    channel: Literal["wechat", "wecom"] | None = None

    @model_validator(mode="after")
    def _reachable(self) -> StaffSpec:
        if not (self.wechat_openid or self.wecom_userid):
            raise ValueError("needs wechat_openid or wecom_userid (nobody could reach them)")
        if self.channel is None:
            self.channel = "wechat" if self.wechat_openid else "wecom"
        if self.channel == "wecom" and not self.wecom_userid:
            raise ValueError("channel wecom needs wecom_userid")
        if self.channel == "wechat" and not self.wechat_openid:
            raise ValueError("channel wechat needs wechat_openid")
        return self


class GridFile(BaseModel):
    office: dict[str, str] = {}
    nodes: list[NodeSpec]
    staff: list[StaffSpec] = []


def read_grid_file(path: Path) -> GridFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return GridFile.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise GridFileError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise GridFileError(f"{path}: {where}: {err['msg']}") from exc


async def import_grid(session: AsyncSession, grid: GridFile) -> tuple[int, int]:
    """Insert or update every node and staff member (matched by code / key). Returns the counts."""
    existing = {n.code: n for n in (await session.exec(select(GridNode))).all()}
    seen: set[str] = set()
    count = 0

    async def upsert(spec: NodeSpec, parent: GridNode | None) -> None:
        nonlocal count
        if spec.code in seen:
            raise GridFileError(f"grid code {spec.code!r} appears twice")
        seen.add(spec.code)
        node = existing.get(spec.code) or GridNode(code=spec.code, name=spec.name, level=spec.level)
        node.name, node.level = spec.name, spec.level
        node.aliases, node.landmarks = list(spec.aliases), list(spec.landmarks)
        node.polygon = [list(p) for p in spec.polygon] if spec.polygon else None
        node.robot_key = spec.robot_key
        node.parent_id = parent.id if parent else None
        session.add(node)
        await session.flush()
        node.path = f"{parent.path if parent else '/'}{node.id}/"
        count += 1
        for child in spec.children:
            await upsert(child, node)

    for root in grid.nodes:
        await upsert(root, None)
    await session.flush()

    by_code = {n.code: n for n in (await session.exec(select(GridNode))).all()}
    staff_rows = {s.key: s for s in (await session.exec(select(Staff))).all()}
    for spec in grid.staff:
        node = by_code.get(spec.grid)
        if node is None:
            raise GridFileError(f"staff {spec.key!r}: unknown grid {spec.grid!r}")
        row = staff_rows.get(spec.key) or Staff(key=spec.key, name=spec.name, role=spec.role, grid_id=0)
        row.name, row.role, row.grid_id, row.phone = spec.name, spec.role, node.id or 0, spec.phone
        row.wechat_openid, row.wecom_userid, row.active = spec.wechat_openid, spec.wecom_userid, True
        row.channel = spec.channel or "wechat"
        session.add(row)
    await session.flush()
    return count, len(grid.staff)


async def all_nodes(session: AsyncSession) -> list[GridNode]:
    return list((await session.exec(select(GridNode).order_by(col(GridNode.id)))).all())


async def get_node(session: AsyncSession, node_id: int) -> GridNode | None:
    return await session.get(GridNode, node_id)


def ancestor_ids(node: GridNode) -> list[int]:
    """Ids from the node itself up to the root."""
    return [int(p) for p in reversed(node.path.strip("/").split("/")) if p]


async def leader_for(session: AsyncSession, node: GridNode) -> Staff | None:
    """The leader responsible for `node`: its own, else the nearest ancestor's (网格 → 社区 → 街道)."""
    return await nearest(session, node, "leader")


async def nearest(session: AsyncSession, node: GridNode, role: str) -> Staff | None:
    """The first active staff member of `role` at `node` or above it."""
    for node_id in ancestor_ids(node):
        staff = await staff_at(session, node_id, role)
        if staff is not None:
            return staff
    return None


# Run for every message (staff_by_openid) and every dispatch (staff_at): built once, the values bound
# when they run, as building a statement and SQLAlchemy's cache key for it costs more CPU than running it.
_STAFF_AT = (
    select(Staff)
    .where(Staff.grid_id == bindparam("node_id"), Staff.role == bindparam("role"), col(Staff.active).is_(True))
    .order_by(col(Staff.id))
    .limit(1)
)


async def staff_at(session: AsyncSession, node_id: int, role: str) -> Staff | None:
    """The active staff member of `role` at exactly this node (the first listed), if any."""
    return (await session.exec(_STAFF_AT, params={"node_id": node_id, "role": role})).first()


async def dispatcher_for(session: AsyncSession, node: GridNode) -> Staff | None:
    """The 调度员 nearest above (or at) `node`; where there is none, the top level's leader."""
    staff = await nearest(session, node, "dispatcher")
    if staff is not None:
        return staff
    root = await get_node(session, ancestor_ids(node)[-1])
    return await leader_for(session, root) if root else None


_STAFF_BY_OPENID = (  # built once: see _STAFF_AT
    select(Staff).where(Staff.wechat_openid == bindparam("openid"), col(Staff.active).is_(True))
)


async def staff_by_openid(session: AsyncSession, openid: str) -> Staff | None:
    return (await session.exec(_STAFF_BY_OPENID, params={"openid": openid})).first()


async def staff_by_wecom_userid(session: AsyncSession, userid: str) -> Staff | None:
    stmt = select(Staff).where(Staff.wecom_userid == userid, col(Staff.active).is_(True))
    return (await session.exec(stmt)).first()


async def export_grid(session: AsyncSession, *, office: dict[str, str]) -> GridFile:
    """The grid definition as stored, in the grid file's shape (what `import_grid` reads back).
    Active staff only; passwords are never part of it."""
    nodes = await all_nodes(session)
    specs: dict[int, NodeSpec] = {}
    roots: list[NodeSpec] = []
    for node in sorted(nodes, key=lambda n: (n.path.count("/"), n.id or 0)):  # parents first
        spec = NodeSpec(
            code=node.code,
            name=node.name,
            level=node.level,
            aliases=list(node.aliases),
            landmarks=list(node.landmarks),
            polygon=[(p[0], p[1]) for p in node.polygon] if node.polygon else None,
            robot_key=node.robot_key,
        )
        specs[node.id or 0] = spec
        parent = specs.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent is not None else roots).append(spec)
    code_of = {n.id: n.code for n in nodes}
    staff_rows = (await session.exec(select(Staff).where(col(Staff.active).is_(True)).order_by(col(Staff.id)))).all()
    staff = [
        StaffSpec(
            key=s.key,
            name=s.name,
            role=s.role,  # type: ignore[arg-type]
            grid=code_of[s.grid_id],
            phone=s.phone,
            wechat_openid=s.wechat_openid,
            wecom_userid=s.wecom_userid,
            channel=s.channel,  # type: ignore[arg-type]
        )
        for s in staff_rows
    ]
    return GridFile(office=office, nodes=roots, staff=staff)


def dump_grid_file(grid: GridFile) -> str:
    """YAML as a person writes it: Chinese as is, keys in the file's order, empty fields left out."""
    data = grid.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120)


def parse_grid_text(text: str) -> GridFile:
    """A grid file's text (an upload) → GridFile, or GridFileError saying where it is wrong."""
    try:
        return GridFile.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise GridFileError(str(exc)) from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise GridFileError(f"{where}: {err['msg']}") from exc
