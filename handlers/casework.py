"""What every staff command shares: which case it is about, what the sender may do with it, and
applying one row of the state machine with a refusal that says why.

Who is acting comes from the transport's signature check (their openid or WeCom user id), never from
anything they type. What they may do depends on how they stand to the case (`roles_of`); the state
machine (storage/lifecycle.py) says which roles may take which action.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import messages as m
from handlers.commands import Command, parse_command
from handlers.context import Services
from handlers.dispatching import place_of
from handlers.routing import Filter
from handlers.types import Inbound
from storage import cases
from storage.lifecycle import OPEN_STATUSES, ROLE_NAMES, Action, IllegalTransition, NotAllowed, Role, Status
from storage.models import Case, Staff

# Which cases a command may mean when the number is left out: (column naming the sender, statuses).
Pool = tuple[str, frozenset[Status]]
WORKING = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS})
MINE_WORKING: Pool = ("assignee_id", WORKING)


def verb(*verbs: str) -> Filter:
    """Route filter: the message is one of these staff commands."""

    def match(msg: Inbound) -> bool:
        cmd = parse_command(msg.text or "")
        return cmd is not None and cmd.verb in verbs

    return match


def grid_name(services: Services, grid_id: int | None) -> str:
    ref = services.grids.refs.get(grid_id) if grid_id is not None else None
    return ref.name if ref else "其他网格"


async def roles_of(session: AsyncSession, staff: Staff, case: Case, services: Services) -> frozenset[Role]:
    """How `staff` stands to `case`. Empty: not theirs at all (they are told so, and shown nothing)."""
    grids = services.grids
    assignee = await session.get(Staff, case.assignee_id) if case.assignee_id else None
    owner_grid = assignee.grid_id if assignee else case.grid_id
    mine = case.assignee_id == staff.id
    if case.grid_id is not None:
        over_case = grids.within(case.grid_id, staff.grid_id)
    else:  # not placed yet: the whole street's
        over_case = len(grids.line(staff.grid_id)) == 1
    above_owner = grids.within(owner_grid, staff.grid_id, strictly=True)
    roles: set[Role] = set()
    if staff.role == "leader" and (mine or over_case):
        roles.add(Role.LEADER)
    if staff.role == "dispatcher" and (mine or over_case):
        roles.add(Role.DISPATCHER)
    if (staff.role in ("leader", "dispatcher") and above_owner) or case.extension_approver_id == staff.id:
        roles.add(Role.SUPERIOR)
    if case.transfer_to_id == staff.id or (
        staff.role == "leader"
        and case.transfer_grid_id is not None
        and grids.within(case.transfer_grid_id, staff.grid_id)
    ):
        roles.add(Role.TARGET)
    if (
        case.verifier_id == staff.id
        or (staff.role == "inspector" and over_case)
        or (staff.role == "leader" and above_owner)
    ):
        roles.add(Role.VERIFIER)
    return frozenset(roles)


async def command_target(
    msg: Inbound,
    staff: Staff,
    session: AsyncSession,
    services: Services,
    pools: Sequence[Pool] = (MINE_WORKING,),
    *,
    note_needed: str | None = None,
) -> tuple[Command, Case, frozenset[Role]] | str:
    """The command, the case it is about and the sender's roles on it — or the reply that says why
    not: no such case, not theirs, several to choose from, or (with `note_needed`) the note or
    reason that must come with it."""
    cmd = parse_command(msg.text or "")
    assert cmd is not None
    if cmd.number is not None:
        case = await cases.case_by_number(session, cmd.number)
        if case is None:
            return m.CASE_NOT_FOUND.format(number=cmd.number)
    elif cmd.ref is not None:
        case = await cases.case_by_ref(session, staff_id=staff.id or 0, ref=cmd.ref)
        if case is None:
            return m.REF_NOT_FOUND.format(ref=cmd.ref)
    else:
        found = await candidates(session, staff, pools)
        if not found:
            # Their only open case, in a state this verb does not fit: name it, and let the state
            # machine say why not ("当前状态为“已派遣”，不能挂起"), rather than "nothing to do".
            found = await candidates(session, staff, (("assignee_id", OPEN_STATUSES),))
            if len(found) != 1:
                return m.NO_OPEN_CASE.format(verb=cmd.verb)
        if len(found) > 1:
            shown = found[:10]
            refs = await cases.refs_for(session, staff=staff, cases=shown)
            lines = [
                m.CASE_CHOICE_LINE.format(ref=ref, number=c.number, category=c.category, place=place_of(c))
                for ref, c in zip(refs, shown, strict=True)
            ]
            return m.WHICH_CASE.format(count=len(found), verb=cmd.verb, example=f"#{refs[0]}", lines="\n".join(lines))
        [case] = found
    roles = await roles_of(session, staff, case, services)
    if not roles:
        return m.NOT_YOURS.format(number=case.number, grid=grid_name(services, case.grid_id), verb=cmd.verb)
    if note_needed is not None and not cmd.note:
        return note_needed.format(number=case.number, verb=cmd.verb)
    return cmd, case, roles


async def candidates(session: AsyncSession, staff: Staff, pools: Sequence[Pool]) -> list[Case]:
    """Every case waiting for `staff` in any of the pools, oldest first."""
    return await cases.waiting_for(session, staff_id=staff.id or 0, pools=pools)


async def apply(
    session: AsyncSession,
    case: Case,
    staff: Staff,
    action: Action,
    roles: frozenset[Role],
    now: datetime,
    note: str | None = None,
) -> str | None:
    """Apply a staff member's action through the state machine; the refusal when it does not allow it."""
    try:
        await cases.transition(
            session,
            case=case,
            action=action,
            roles=roles,
            now=now,
            actor_kind="staff",
            actor_id=staff.id,
            note=note,
        )
    except NotAllowed as exc:
        who = "或".join(ROLE_NAMES[r] for r in sorted(exc.who))
        return m.NOT_YOUR_PART.format(number=case.number, verb=action.value, who=who)
    except IllegalTransition:
        return m.ILLEGAL.format(number=case.number, status=case.status, verb=action.value)
    return None


async def act(
    msg: Inbound,
    staff: Staff,
    session: AsyncSession,
    services: Services,
    now: datetime,
    action: Action,
    pools: Sequence[Pool] = (MINE_WORKING,),
    *,
    note_needed: str | None = None,
) -> tuple[Command, Case] | str:
    """`command_target` then `apply` (the note on the timeline), for commands with nothing to decide
    in between: the command and its case, or the reply that says why not."""
    found = await command_target(msg, staff, session, services, pools, note_needed=note_needed)
    if isinstance(found, str):
        return found
    cmd, case, roles = found
    refusal = await apply(session, case, staff, action, roles, now, cmd.note or None)
    return refusal if refusal is not None else (cmd, case)
