"""What every handler may ask for by parameter name, and the per-message outcome it may fill in."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from handlers.categories import Catalog
from handlers.places import GridIndex


@dataclass
class Services:
    """Long-lived collaborators, built once by the app factory."""

    catalog: Catalog
    grids: GridIndex
    zone: ZoneInfo
    office_name: str = "网格服务号"
    place_window_minutes: int = 30


@dataclass
class Outcome:
    """Filled in by the handler: which case the message ended up on (for the inbound log)."""

    case_id: int | None = None
