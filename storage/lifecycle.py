"""The case state machine: one table, read like a spec (state × action → new state, who may act).

Nothing else in the code compares statuses to decide what may happen; handlers ask `next_status`
(through `storage.cases.transition`) and turn a refusal into a reply that says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    NEW = "待派遣"  # stored, no grid known yet (waiting for a place, or for a dispatcher)
    DISPATCHED = "已派遣"  # routed to a leader, not yet accepted
    ACCEPTED = "已接单"
    IN_PROGRESS = "处理中"
    TRANSFERRING = "转派中"  # 转派 asked; the first receiver owns it until the target takes it
    SUSPENDED = "挂起"  # waiting on something outside the grid's hands, until a date
    VERIFYING = "待核查"  # 办结 of a category that needs 核查: the verifier confirms or sends it back
    RESOLVED = "已办结"
    AWAITING_RATING = "待评价"  # the reporter was asked 满意 / 基本满意 / 不满意
    CLOSED = "已结案"
    DUPLICATE = "重复"  # the same problem as another open case; closed, its residents follow that one
    UNFOUNDED = "不属实"  # checked and found not to be so; closed with the reason


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
    TRANSFER = "转派"  # to another grid or a department, with a reason; the target must take it
    TAKE_TRANSFER = "接收转派"  # the target takes it over
    REFUSE_TRANSFER = "拒收"  # the target refuses, with a reason; it stays with the first receiver
    SUSPEND = "挂起"  # waiting on something outside, until a date, with a reason
    RESUME = "恢复"  # work goes on (the leader says so, or the date came)
    REQUEST_EXTENSION = "申请延期"  # more time, with a reason; the level above decides
    APPROVE_EXTENSION = "同意延期"
    REFUSE_EXTENSION = "不同意延期"
    SUBMIT = "办结待核查"  # 办结 of a category that needs 核查
    VERIFY = "核查通过"
    REWORK = "返工"  # the verifier sends it back, with a reason
    MARK_DUPLICATE = "重复"  # staff: the same problem as another case
    MARK_UNFOUNDED = "不属实"  # staff: not so, with the reason
    ASK_RATING = "请评价"
    RATE = "评价"  # 满意 / 基本满意: closes the case
    REOPEN = "重办"  # 不满意: back to work, with the resident's reason
    CLOSE = "结案"  # nobody to ask, or no answer in time (未评价)
    BLOCK = "屏蔽"  # the reporter's account was blocked (no change of status)


class Role(StrEnum):
    SYSTEM = "system"
    LEADER = "leader"  # the assignee, or a leader of the case's grid or one of its ancestors
    DISPATCHER = "dispatcher"  # 调度员 of the case's level or one above
    SUPERIOR = "superior"  # a leader or dispatcher above the assignee: decides 延期
    TARGET = "target"  # the grid or department a 转派 asks to take the case
    VERIFIER = "verifier"  # 核查员, or a leader above the assignee, where a category needs 核查
    RESIDENT = "resident"  # the reporter


ROLE_NAMES = {
    Role.SYSTEM: "系统",
    Role.LEADER: "负责的网格员",
    Role.DISPATCHER: "调度员",
    Role.SUPERIOR: "上级",
    Role.TARGET: "接收转派的一方",
    Role.VERIFIER: "核查人",
    Role.RESIDENT: "反映人",
}


@dataclass(frozen=True)
class Rule:
    to: Status
    who: frozenset[Role]


def _rules(
    states: Iterable[Status], action: Action, who: set[Role], to: Status | None = None
) -> dict[tuple[Status, Action], Rule]:
    """The same action from several states: to `to`, or (None) to the state it was in."""
    return {(s, action): Rule(to or s, frozenset(who)) for s in states}


S, A, R = Status, Action, Role
# Being worked: the states in which the assignee can act on the case.
WORKING = (S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS)
STAFF = {R.LEADER, R.DISPATCHER}

TRANSITIONS: dict[tuple[Status, Action], Rule] = {
    (S.NEW, A.DISPATCH): Rule(S.DISPATCHED, frozenset({R.SYSTEM, R.DISPATCHER})),
    # Not yet accepted, and the place says it belongs to another grid: move it there.
    (S.DISPATCHED, A.REROUTE): Rule(S.DISPATCHED, frozenset({R.SYSTEM})),
    (S.DISPATCHED, A.ACCEPT): Rule(S.ACCEPTED, frozenset({R.LEADER})),
    # 进展: a progress note; the first one also counts as accepting an unaccepted case.
    **_rules(WORKING, A.PROGRESS, {R.LEADER}, S.IN_PROGRESS),
    # A leader who fixes the problem straight away may resolve without a separate 接单.
    **_rules(WORKING, A.RESOLVE, {R.LEADER}, S.RESOLVED),
    **_rules(WORKING, A.SUBMIT, {R.LEADER}, S.VERIFYING),
    (S.VERIFYING, A.VERIFY): Rule(S.RESOLVED, frozenset({R.VERIFIER})),
    (S.VERIFYING, A.REWORK): Rule(S.IN_PROGRESS, frozenset({R.VERIFIER})),
    **_rules(WORKING, A.RETURN, {R.LEADER}, S.NEW),
    **_rules(WORKING, A.ESCALATE, {R.LEADER}, S.DISPATCHED),
    # 转派: to another grid or a department. 首接负责: the first receiver keeps it until the target
    # takes it; a refusal leaves it with them, accepted (they have had it in hand).
    **_rules(WORKING, A.TRANSFER, STAFF, S.TRANSFERRING),
    (S.TRANSFERRING, A.TAKE_TRANSFER): Rule(S.ACCEPTED, frozenset({R.TARGET})),
    (S.TRANSFERRING, A.REFUSE_TRANSFER): Rule(S.ACCEPTED, frozenset({R.TARGET})),
    **_rules((S.ACCEPTED, S.IN_PROGRESS), A.SUSPEND, {R.LEADER}, S.SUSPENDED),
    (S.SUSPENDED, A.RESUME): Rule(S.IN_PROGRESS, frozenset({R.LEADER, R.SYSTEM})),
    # 延期: asked and decided without leaving the state the case is in.
    **_rules((S.ACCEPTED, S.IN_PROGRESS, S.SUSPENDED), A.REQUEST_EXTENSION, {R.LEADER}),
    **_rules((S.ACCEPTED, S.IN_PROGRESS, S.SUSPENDED), A.APPROVE_EXTENSION, {R.SUPERIOR}),
    **_rules((S.ACCEPTED, S.IN_PROGRESS, S.SUSPENDED), A.REFUSE_EXTENSION, {R.SUPERIOR}),
    **_rules((S.NEW, *WORKING), A.MARK_DUPLICATE, STAFF, S.DUPLICATE),
    **_rules((S.NEW, *WORKING), A.MARK_UNFOUNDED, STAFF, S.UNFOUNDED),
    # After 办结 the reporter rates the work; 不满意 sends it back to the same leader (重办).
    (S.RESOLVED, A.ASK_RATING): Rule(S.AWAITING_RATING, frozenset({R.SYSTEM})),
    (S.RESOLVED, A.CLOSE): Rule(S.CLOSED, frozenset({R.SYSTEM})),  # nobody to ask (no reporter)
    (S.AWAITING_RATING, A.RATE): Rule(S.CLOSED, frozenset({R.RESIDENT})),
    # 重办: the reporter's 不满意, or the dispatcher's (a 回访 found the problem still there).
    (S.AWAITING_RATING, A.REOPEN): Rule(S.DISPATCHED, frozenset({R.RESIDENT, R.DISPATCHER})),
    (S.AWAITING_RATING, A.CLOSE): Rule(S.CLOSED, frozenset({R.SYSTEM})),  # 未评价, after the wait
}

OPEN_STATUSES = frozenset({S.NEW, S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS, S.TRANSFERRING, S.SUSPENDED, S.VERIFYING})
# Closed for good: only the defined path (a rating of 不满意 while 待评价) reopens a case.
FINAL_STATUSES = frozenset({S.CLOSED, S.DUPLICATE, S.UNFOUNDED})


def first_allowed(status: str, actions: tuple[Action, ...]) -> Action:
    """Of the actions one verb may mean (接单: accept, or take a 转派), the one this state has a row
    for; the first when none has (and the table then refuses it)."""
    return next((a for a in actions if (Status(status), a) in TRANSITIONS), actions[0])


class IllegalTransition(Exception):
    """The table has no row for this action in this state."""

    def __init__(self, status: str, action: Action) -> None:
        super().__init__(f"{action} is not allowed from {status}")
        self.status = status
        self.action = action


class NotAllowed(IllegalTransition):
    """The row exists, but none of the actor's roles may take it; `who` says who may."""

    def __init__(self, status: str, action: Action, who: frozenset[Role]) -> None:
        super().__init__(status, action)
        self.who = who


def next_status(status: str, action: Action, roles: Role | Iterable[Role]) -> Status:
    """The status after `action` by someone holding `roles`; IllegalTransition when the table has no
    such row, NotAllowed when it has one but not for these roles."""
    held = {roles} if isinstance(roles, Role) else set(roles)
    rule = TRANSITIONS.get((Status(status), action))
    if rule is None:
        raise IllegalTransition(status, action)
    if not held & rule.who:
        raise NotAllowed(status, action, rule.who)
    return rule.to
