"""The state machine table, row by row."""

from __future__ import annotations

import pytest

from storage.lifecycle import TRANSITIONS, Action, IllegalTransition, Role, Status, next_status


@pytest.mark.parametrize(
    ("status", "action", "role", "expected"),
    [
        (Status.NEW, Action.DISPATCH, Role.SYSTEM, Status.DISPATCHED),
        (Status.DISPATCHED, Action.REROUTE, Role.SYSTEM, Status.DISPATCHED),
        (Status.DISPATCHED, Action.ACCEPT, Role.LEADER, Status.ACCEPTED),
        (Status.DISPATCHED, Action.RESOLVE, Role.LEADER, Status.RESOLVED),
        (Status.ACCEPTED, Action.RESOLVE, Role.LEADER, Status.RESOLVED),
        (Status.DISPATCHED, Action.PROGRESS, Role.LEADER, Status.IN_PROGRESS),
        (Status.ACCEPTED, Action.PROGRESS, Role.LEADER, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Action.PROGRESS, Role.LEADER, Status.IN_PROGRESS),
        (Status.IN_PROGRESS, Action.RESOLVE, Role.LEADER, Status.RESOLVED),
        (Status.NEW, Action.DISPATCH, Role.DISPATCHER, Status.DISPATCHED),
        (Status.DISPATCHED, Action.RETURN, Role.LEADER, Status.NEW),
        (Status.ACCEPTED, Action.RETURN, Role.LEADER, Status.NEW),
        (Status.IN_PROGRESS, Action.RETURN, Role.LEADER, Status.NEW),
        (Status.DISPATCHED, Action.ESCALATE, Role.LEADER, Status.DISPATCHED),
        (Status.ACCEPTED, Action.ESCALATE, Role.LEADER, Status.DISPATCHED),
        (Status.IN_PROGRESS, Action.ESCALATE, Role.LEADER, Status.DISPATCHED),
    ],
)
def test_allowed_transition(status: Status, action: Action, role: Role, expected: Status) -> None:
    assert next_status(status, action, role) == expected


def test_table_has_exactly_the_tested_rows() -> None:
    assert len(TRANSITIONS) == 15


@pytest.mark.parametrize(
    ("status", "action", "role"),
    [
        (Status.NEW, Action.ACCEPT, Role.LEADER),  # nobody to accept it yet
        (Status.NEW, Action.DISPATCH, Role.LEADER),  # dispatch is the system's (dispatchers: a later issue)
        (Status.ACCEPTED, Action.ACCEPT, Role.LEADER),
        (Status.RESOLVED, Action.ACCEPT, Role.LEADER),  # closed stays closed
        (Status.RESOLVED, Action.RESOLVE, Role.LEADER),
        (Status.RESOLVED, Action.PROGRESS, Role.LEADER),  # closed stays closed
        (Status.NEW, Action.PROGRESS, Role.LEADER),
        (Status.IN_PROGRESS, Action.ACCEPT, Role.LEADER),
        (Status.IN_PROGRESS, Action.PROGRESS, Role.SYSTEM),
        (Status.NEW, Action.RETURN, Role.LEADER),  # nothing to return yet
        (Status.RESOLVED, Action.RETURN, Role.LEADER),
        (Status.RESOLVED, Action.ESCALATE, Role.LEADER),
        (Status.DISPATCHED, Action.ACCEPT, Role.DISPATCHER),  # dispatchers route, they do not work cases
        (Status.DUPLICATE, Action.RETURN, Role.LEADER),
        (Status.DISPATCHED, Action.DISPATCH, Role.SYSTEM),
    ],
)
def test_illegal_transition_is_refused(status: Status, action: Action, role: Role) -> None:
    with pytest.raises(IllegalTransition):
        next_status(status, action, role)
