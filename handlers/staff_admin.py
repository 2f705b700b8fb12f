"""人员管理: who may see and manage which staff in the web console.

The rule follows the role model the rest of the console already uses (handlers/console.py scopes
cases to a person's node and below; only the street's 调度员 imports the grid file):

- everyone sees the staff on their own node and below (as they see those nodes' cases);
- a 网格长/调度员 (role leader or dispatcher) manages the staff on the nodes *below* their own — a
  community leader manages the grid leaders of that community, not the people beside them;
- the street's 调度员 (a dispatcher on the top node) manages everyone, their own node included, as
  the grid file they can import already lets them;
- nobody manages themselves here (no raising one's own role, no locking oneself out), and a
  核查员 (inspector) manages nobody.
A member is placed only on a node their manager manages, so nobody can hand out more than they hold.
"""

from __future__ import annotations

from handlers.context import Services
from storage.models import Staff

MANAGER_ROLES = ("leader", "dispatcher")
LINK_MINUTES = 15


def is_top_dispatcher(staff: Staff, services: Services) -> bool:
    return staff.role == "dispatcher" and len(services.grids.line(staff.grid_id)) == 1


def visible_nodes(staff: Staff, services: Services) -> set[int]:
    """Nodes whose staff `staff` may see: their own and below."""
    return set(services.grids.subtree(staff.grid_id))


def managed_nodes(staff: Staff, services: Services) -> set[int]:
    """Nodes whose staff `staff` may add, edit, deactivate and log in (see the module docstring)."""
    if staff.role not in MANAGER_ROLES or not staff.active:
        return set()
    below = visible_nodes(staff, services)
    return below if is_top_dispatcher(staff, services) else below - {staff.grid_id}


def may_see(actor: Staff, member: Staff, services: Services) -> bool:
    return member.grid_id in visible_nodes(actor, services)


def may_manage(actor: Staff, member: Staff, services: Services) -> bool:
    return member.id != actor.id and member.grid_id in managed_nodes(actor, services)


def mask(value: str | None) -> str:
    """An openid / user id as the list shows it: enough to tell two apart, not enough to use."""
    if not value:
        return "—"
    if len(value) <= 6:
        return value[:1] + "…"
    return f"{value[:4]}…{value[-2:]}"
