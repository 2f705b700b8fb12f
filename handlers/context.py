"""What every handler may ask for by parameter name, and the per-message outcome it may fill in."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from handlers.classify import Classifier
from handlers.places import GridIndex
from handlers.policy import Policy


@dataclass
class Services:
    """Long-lived collaborators, built once by the app factory."""

    classifier: Classifier
    grids: GridIndex
    zone: ZoneInfo
    # Deadlines per kind of case, working days, quiet hours (bot/data/policy.yaml).
    policy: Policy
    office_name: str = "网格服务号"
    place_window_minutes: int = 30
    # Below this classifier confidence the leader is asked to confirm the category.
    confirm_below: float = 0.5
    # Messages from one resident this close together are one report (text + photo + pin).
    merge_window_minutes: int = 5
    # A new report this close to an open one (same category, same grid) repeats it.
    duplicate_radius_m: float = 200.0
    duplicate_window_hours: int = 72
    # Abuse limits per resident (messages per minute and hour; new cases per hour).
    max_per_minute: int = 8
    max_per_hour: int = 40
    max_cases_per_hour: int = 5
    # Whether this server has a WeCom app (企业微信自建应用) to push to staff through; without it,
    # staff who prefer WeCom are reached on the Official Account when they have an openid.
    wecom_app: bool = False


@dataclass
class Outcome:
    """Filled in by the handler: which case the message ended up on (for the inbound log)."""

    case_id: int | None = None
