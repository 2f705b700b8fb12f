"""Where a report is: point-in-polygon for location pins, landmarks and aliases for text."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from handlers.text import canonical_place, place_variants
from storage.grids import GridFile, NodeSpec, ancestor_ids
from storage.models import GridNode

_GENERIC = re.compile("小区|社区")
# Functional departments (城管, 供水, 物业 …) sit in the grid file as nodes of this level: cases are
# transferred (转派) to them, never routed to them from a resident's words or pin.
DEPARTMENT_LEVEL = "部门"


@dataclass(frozen=True)
class GridRef:
    id: int
    code: str
    name: str
    level: str
    depth: int


@dataclass(frozen=True)
class TextMatch:
    grid: GridRef
    phrase: str


class GridIndex:
    """An in-memory index of the grid hierarchy, rebuilt whenever the grid definition is loaded."""

    def __init__(self, nodes: list[GridNode]) -> None:
        self.refs = {
            n.id: GridRef(n.id, n.code, n.name, n.level, n.path.count("/") - 2) for n in nodes if n.id is not None
        }
        # Each node's ids from itself up to the root (网格 → 社区 → 街道).
        self._lines = {n.id: ancestor_ids(n) for n in nodes if n.id is not None}
        # Grid groups with a WeCom robot, by node id.
        self.robots = {n.id: n.robot_key for n in nodes if n.id is not None and n.robot_key}
        self._shapes: list[tuple[GridRef, PreparedGeometry]] = []
        self._phrases: list[tuple[str, GridRef]] = []
        self._departments: list[tuple[str, GridRef]] = []
        for n in nodes:
            if n.id is None:
                continue
            ref = self.refs[n.id]
            if n.level == DEPARTMENT_LEVEL:
                self._departments += [(name, ref) for name in {n.name, *n.aliases} if name]
                continue
            if n.polygon:
                self._shapes.append((ref, prep(Polygon([(lng, lat) for lng, lat in n.polygon]))))
            for name in {n.name, *n.aliases, *n.landmarks}:
                for phrase in place_variants(name) if name else ():
                    self._phrases.append((phrase, ref))
        # Deepest first: a pin inside a 网格 is also inside its 社区 and 街道.
        self._shapes.sort(key=lambda item: -item[0].depth)
        # Longest phrase first ("幸福里小区" before "幸福里"), then deepest node.
        self._phrases.sort(key=lambda item: (-len(item[0]), -item[1].depth))
        self._departments.sort(key=lambda item: -len(item[0]))

    def locate_point(self, lat: float, lon: float) -> GridRef | None:
        """The deepest grid node whose polygon contains the GCJ-02 point."""
        point = Point(lon, lat)
        for ref, shape in self._shapes:
            if shape.contains(point):
                return ref
        return None

    def locate_text(self, text: str) -> TextMatch | None:
        """The grid named by the longest landmark, alias or name found in the text (buildings in any
        of the usual spellings: 三号楼, 3栋, 3#楼 …)."""
        text = canonical_place(text)
        # "幸福里小区3号楼" should find the landmark "幸福里3号楼": look in the text without 小区/社区 too.
        bare = _GENERIC.sub("", text)
        for phrase, ref in self._phrases:
            if phrase in text or phrase in bare:
                return TextMatch(ref, phrase)
        return None

    def locate_target(self, text: str) -> GridRef | None:
        """Where a 转派 or 派遣 sends a case: a department named in the text (城管, 供水 …), else
        the grid its name, alias or a landmark names."""
        for name, ref in self._departments:
            if name in text:
                return ref
        match = self.locate_text(text)
        return match.grid if match else None

    def landmark_key(self, text: str | None) -> str | None:
        """Which landmark the text names, spelled one way (for "same landmark" comparisons)."""
        match = self.locate_text(text) if text else None
        return _GENERIC.sub("", match.phrase) if match else None

    @classmethod
    def from_file(cls, grid: GridFile) -> GridIndex:
        """An index straight from a grid file, without a database (`gridbot parse --grid`)."""
        nodes: list[GridNode] = []

        def walk(specs: list[NodeSpec], parent_path: str) -> None:
            for spec in specs:
                node = GridNode(
                    id=len(nodes) + 1,
                    code=spec.code,
                    name=spec.name,
                    level=spec.level,
                    aliases=spec.aliases,
                    landmarks=spec.landmarks,
                    polygon=[list(p) for p in spec.polygon] if spec.polygon else None,
                )
                node.path = f"{parent_path}{node.id}/"
                nodes.append(node)
                walk(spec.children, node.path)

        walk(grid.nodes, "/")
        return cls(nodes)

    def line(self, grid_id: int | None) -> list[int]:
        """Ids from the node up to the root; [] for an unknown or missing node."""
        return self._lines.get(grid_id, []) if grid_id is not None else []

    def within(self, grid_id: int | None, ancestor_id: int, *, strictly: bool = False) -> bool:
        """Is `grid_id` the node `ancestor_id` or below it (strictly: below it only)?"""
        line = self.line(grid_id)
        return ancestor_id in (line[1:] if strictly else line)

    def subtree(self, grid_id: int) -> list[int]:
        """The node and every node below it."""
        return [node for node, line in self._lines.items() if grid_id in line]

    def group_of(self, grid_id: int | None) -> tuple[GridRef, str] | None:
        """The nearest grid group with a robot, from the node up: (its node, the robot key)."""
        for node in self.line(grid_id):
            if node in self.robots:
                return self.refs[node], self.robots[node]
        return None

    def root(self) -> GridRef | None:
        roots = [r for r in self.refs.values() if r.depth == 0 and r.level != DEPARTMENT_LEVEL]
        return min(roots, key=lambda r: r.id) if roots else None


# --- datums ---------------------------------------------------------------------------------------
# Maps in China (Tencent, AMap, WeChat's location pins) use GCJ-02, a datum offset from GPS's WGS84 by
# a few hundred metres; our polygons are GCJ-02. Other systems (Open311) speak WGS84. The published
# conversion (Krasovsky ellipsoid constants); outside China both datums agree.
_A = 6378245.0
_EE = 0.00669342162296594323


def _in_china(lat: float, lon: float) -> bool:
    return 72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271


def _offset(lat: float, lon: float) -> tuple[float, float]:
    x, y = lon - 105.0, lat - 35.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    wave = (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat += wave + (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlon += wave + (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * math.sqrt(magic)) * math.pi)
    dlon = (dlon * 180.0) / (_A / math.sqrt(magic) * math.cos(rad) * math.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    if not _in_china(lat, lon):
        return lat, lon
    dlat, dlon = _offset(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """The inverse, to well under a metre (the offset barely changes over its own size)."""
    wlat, wlon = lat, lon
    for _ in range(3):
        glat, glon = wgs84_to_gcj02(wlat, wlon)
        wlat, wlon = wlat - (glat - lat), wlon - (glon - lon)
    return wlat, wlon
