"""One message through the handlers: find out who is talking, then let the routers answer."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from handlers import abuse, closing, digest, escalation, feedback, holds, intake, leader, resident
from handlers import messages as m
from handlers.context import Outcome, Services
from handlers.routing import Dispatcher
from handlers.types import Inbound
from storage import grids
from storage.cases import resident_for

# Staff are recognised by their authenticated openid or WeCom user id, never by anything they type.
# leader.router ends with the help text for anything else, so it comes last.
staff_dispatcher = Dispatcher(
    escalation.router, holds.router, closing.router, abuse.router, digest.router, leader.router
)
resident_dispatcher = Dispatcher(resident.router, feedback.router, intake.router)


async def handle(session: AsyncSession, msg: Inbound, services: Services, now: datetime) -> tuple[str | None, Outcome]:
    """The passive reply (None: nothing to say) and what the message did."""
    outcome = Outcome()
    context: dict[str, object] = {
        "msg": msg,
        "session": session,
        "services": services,
        "now": now,
        "outcome": outcome,
    }
    if msg.channel == "wecom":  # a WeCom app speaks only to the corp's members: staff or nobody
        staff = await grids.staff_by_wecom_userid(session, msg.sender)
        if staff is None:
            return m.WECOM_NOT_STAFF, outcome
    else:
        staff = await grids.staff_by_openid(session, msg.sender)
    # Everything a staff member sends goes to the staff routes (a pin, an app or menu event, an
    # untranscribed voice note get staff answers): staff never become residents, nor make cases.
    if staff is not None:
        context["staff"] = staff
        return await staff_dispatcher.feed(msg, context), outcome
    context["resident"] = person = await resident_for(session, openid=msg.sender, now=now)
    if msg.kind != "event":
        go_on, reply = await abuse.gate(session, resident=person, services=services, now=now)
        if not go_on:
            return reply, outcome
    return await resident_dispatcher.feed(msg, context), outcome
