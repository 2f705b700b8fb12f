"""The case state machine: one table, read like a spec (state × action → new state, who may act).

Later issues add rows (退回, 转派, 上报, 挂起, 延期, 核查, 重办 …); nothing else in the code compares
statuses to decide what may happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    NEW = "待派遣"  # stored, no grid known yet (waiting for a place, or for a dispatcher)
    DISPATCHED = "已派遣"  # routed to a leader, not yet accepted
    ACCEPTED = "已接单"
    IN_PROGRESS = "处理中"
    RESOLVED = "已办结"
    DUPLICATE = "重复"  # born linked to an open case that reports the same problem; closed at birth


class Action(StrEnum):
    REPORT = "上报"  # a resident's report creates the case (no transition: the birth event)
    DISPATCH = "派遣"
    ACCEPT = "接单"
    PROGRESS = "进展"
    RESOLVE = "办结"
    PROOF = "办结照片"
    LOCATE = "补充位置"
    ATTACH = "补充材料"
    SUPPLEMENT = "补充说明"
    REROUTE = "改派"  # the place turned out to be another grid's (a pin, or an urgent case's place)
    RECLASSIFY = "改类"  # a leader corrects the category (no change of status)
    REPEAT = "重复反映"  # another resident reported the same problem
    RETURN = "退回"  # wrong grid or not ours: back to the dispatcher level, with a reason
    ESCALATE = "上报"  # to the parent level's leader, with a reason


class Role(StrEnum):
    SYSTEM = "system"
    LEADER = "leader"  # the assignee, or a leader of the case's grid or one of its ancestors
    DISPATCHER = "dispatcher"  # 调度员 of a level above the case


@dataclass(frozen=True)
class Rule:
    to: Status
    who: frozenset[Role]


TRANSITIONS: dict[tuple[Status, Action], Rule] = {
    (Status.NEW, Action.DISPATCH): Rule(Status.DISPATCHED, frozenset({Role.SYSTEM, Role.DISPATCHER})),
    # Not yet accepted, and the place says it belongs to another grid: move it there.
    (Status.DISPATCHED, Action.REROUTE): Rule(Status.DISPATCHED, frozenset({Role.SYSTEM})),
    (Status.DISPATCHED, Action.ACCEPT): Rule(Status.ACCEPTED, frozenset({Role.LEADER})),
    # A leader who fixes the problem straight away may resolve without a separate 接单.
    (Status.DISPATCHED, Action.RESOLVE): Rule(Status.RESOLVED, frozenset({Role.LEADER})),
    (Status.ACCEPTED, Action.RESOLVE): Rule(Status.RESOLVED, frozenset({Role.LEADER})),
    # 进展: a progress note; the first one also counts as accepting an unaccepted case.
    (Status.DISPATCHED, Action.PROGRESS): Rule(Status.IN_PROGRESS, frozenset({Role.LEADER})),
    (Status.ACCEPTED, Action.PROGRESS): Rule(Status.IN_PROGRESS, frozenset({Role.LEADER})),
    (Status.IN_PROGRESS, Action.PROGRESS): Rule(Status.IN_PROGRESS, frozenset({Role.LEADER})),
    (Status.IN_PROGRESS, Action.RESOLVE): Rule(Status.RESOLVED, frozenset({Role.LEADER})),
    (Status.DISPATCHED, Action.RETURN): Rule(Status.NEW, frozenset({Role.LEADER})),
    (Status.ACCEPTED, Action.RETURN): Rule(Status.NEW, frozenset({Role.LEADER})),
    (Status.IN_PROGRESS, Action.RETURN): Rule(Status.NEW, frozenset({Role.LEADER})),
    (Status.DISPATCHED, Action.ESCALATE): Rule(Status.DISPATCHED, frozenset({Role.LEADER})),
    (Status.ACCEPTED, Action.ESCALATE): Rule(Status.DISPATCHED, frozenset({Role.LEADER})),
    (Status.IN_PROGRESS, Action.ESCALATE): Rule(Status.DISPATCHED, frozenset({Role.LEADER})),
}

OPEN_STATUSES = frozenset({Status.NEW, Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS})


class IllegalTransition(Exception):
    def __init__(self, status: str, action: Action) -> None:
        super().__init__(f"{action} is not allowed from {status}")
        self.status = status
        self.action = action


def next_status(status: str, action: Action, role: Role) -> Status:
    """The status after `action`, or IllegalTransition when the table has no such row for `role`."""
    rule = TRANSITIONS.get((Status(status), action))
    if rule is None or role not in rule.who:
        raise IllegalTransition(status, action)
    return rule.to
