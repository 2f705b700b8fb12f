"""Where a report is: point-in-polygon for location pins, landmarks and aliases for text."""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from storage.models import GridNode


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
            n.id: GridRef(n.id, n.code, n.name, n.level, n.path.count("/") - 2)
            for n in nodes
            if n.id is not None
        }
        self._shapes: list[tuple[GridRef, PreparedGeometry]] = []
        self._phrases: list[tuple[str, GridRef]] = []
        for n in nodes:
            if n.id is None:
                continue
            ref = self.refs[n.id]
            if n.polygon:
                self._shapes.append((ref, prep(Polygon([(lng, lat) for lng, lat in n.polygon]))))
            for phrase in {n.name, *n.aliases, *n.landmarks}:
                if phrase:
                    self._phrases.append((phrase, ref))
        # Deepest first: a pin inside a 网格 is also inside its 社区 and 街道.
        self._shapes.sort(key=lambda item: -item[0].depth)
        # Longest phrase first ("幸福里小区" before "幸福里"), then deepest node.
        self._phrases.sort(key=lambda item: (-len(item[0]), -item[1].depth))

    def locate_point(self, lat: float, lon: float) -> GridRef | None:
        """The deepest grid node whose polygon contains the GCJ-02 point."""
        point = Point(lon, lat)
        for ref, shape in self._shapes:
            if shape.contains(point):
                return ref
        return None

    def locate_text(self, text: str) -> TextMatch | None:
        """The grid named by the longest landmark, alias or name found in the text."""
        for phrase, ref in self._phrases:
            if phrase in text:
                return TextMatch(ref, phrase)
        return None

    def root(self) -> GridRef | None:
        roots = [r for r in self.refs.values() if r.depth == 0]
        return min(roots, key=lambda r: r.id) if roots else None
