"""The state machine table, row by row: every legal move, and every move the table refuses."""

from __future__ import annotations

import itertools

import pytest

from storage.lifecycle import (
    FINAL_STATUSES,
    TRANSITIONS,
    Action,
    IllegalTransition,
    NotAllowed,
    Role,
    Status,
    first_allowed,
    next_status,
)

S, A, R = Status, Action, Role
WORKING = (S.DISPATCHED, S.ACCEPTED, S.IN_PROGRESS)

# The spec, written out: (from, action, who may, to).
SPEC: list[tuple[Status, Action, set[Role], Status]] = [
    (S.NEW, A.DISPATCH, {R.SYSTEM, R.DISPATCHER}, S.DISPATCHED),
    (S.DISPATCHED, A.REROUTE, {R.SYSTEM}, S.DISPATCHED),
    (S.DISPATCHED, A.ACCEPT, {R.LEADER}, S.ACCEPTED),
    *[(s, A.PROGRESS, {R.LEADER}, S.IN_PROGRESS) for s in WORKING],
    *[(s, A.RESOLVE, {R.LEADER}, S.RESOLVED) for s in WORKING],
    *[(s, A.SUBMIT, {R.LEADER}, S.VERIFYING) for s in WORKING],
    (S.VERIFYING, A.VERIFY, {R.VERIFIER}, S.RESOLVED),
    (S.VERIFYING, A.REWORK, {R.VERIFIER}, S.IN_PROGRESS),
    *[(s, A.RETURN, {R.LEADER}, S.NEW) for s in WORKING],
    *[(s, A.ESCALATE, {R.LEADER}, S.DISPATCHED) for s in WORKING],
    *[(s, A.TRANSFER, {R.LEADER, R.DISPATCHER}, S.TRANSFERRING) for s in WORKING],
    (S.TRANSFERRING, A.TAKE_TRANSFER, {R.TARGET}, S.ACCEPTED),
    (S.TRANSFERRING, A.REFUSE_TRANSFER, {R.TARGET}, S.ACCEPTED),
    (S.ACCEPTED, A.SUSPEND, {R.LEADER}, S.SUSPENDED),
    (S.IN_PROGRESS, A.SUSPEND, {R.LEADER}, S.SUSPENDED),
    (S.SUSPENDED, A.RESUME, {R.LEADER, R.SYSTEM}, S.IN_PROGRESS),
    *[(s, A.REQUEST_EXTENSION, {R.LEADER}, s) for s in (S.ACCEPTED, S.IN_PROGRESS, S.SUSPENDED)],
    *[(s, A.APPROVE_EXTENSION, {R.SUPERIOR}, s) for s in (S.ACCEPTED, S.IN_PROGRESS, S.SUSPENDED)],
    *[(s, A.REFUSE_EXTENSION, {R.SUPERIOR}, s) for s in (S.ACCEPTED, S.IN_PROGRESS, S.SUSPENDED)],
    *[(s, A.MARK_DUPLICATE, {R.LEADER, R.DISPATCHER}, S.DUPLICATE) for s in (S.NEW, *WORKING)],
    *[(s, A.MARK_UNFOUNDED, {R.LEADER, R.DISPATCHER}, S.UNFOUNDED) for s in (S.NEW, *WORKING)],
    (S.RESOLVED, A.ASK_RATING, {R.SYSTEM}, S.AWAITING_RATING),
    (S.RESOLVED, A.CLOSE, {R.SYSTEM}, S.CLOSED),
    (S.AWAITING_RATING, A.RATE, {R.RESIDENT}, S.CLOSED),
    (S.AWAITING_RATING, A.REOPEN, {R.RESIDENT, R.DISPATCHER}, S.DISPATCHED),
    (S.AWAITING_RATING, A.CLOSE, {R.SYSTEM}, S.CLOSED),
]


def _row_id(row: tuple[Status, Action, set[Role], Status]) -> str:
    return f"{row[0].value}-{row[1].value}"


@pytest.mark.parametrize("row", SPEC, ids=_row_id)
def test_each_row_moves_to_its_state_for_each_allowed_role(row: tuple[Status, Action, set[Role], Status]) -> None:
    status, action, who, to = row
    for role in who:
        assert next_status(status, action, role) == to


@pytest.mark.parametrize("row", SPEC, ids=_row_id)
def test_each_row_refuses_every_other_role_and_says_who_may(row: tuple[Status, Action, set[Role], Status]) -> None:
    status, action, who, _ = row
    for role in set(Role) - who:
        with pytest.raises(NotAllowed) as refused:
            next_status(status, action, role)
        assert refused.value.who == who


def test_the_table_is_exactly_the_spec() -> None:
    assert {(s, a): (frozenset(w), t) for s, a, w, t in SPEC} == {k: (r.who, r.to) for k, r in TRANSITIONS.items()}


def test_every_other_move_is_illegal_whoever_asks() -> None:
    legal = {(s, a) for s, a, _, _ in SPEC}
    illegal = [(s, a) for s, a in itertools.product(Status, Action) if (s, a) not in legal]
    assert len(illegal) > 300
    for status, action in illegal:
        with pytest.raises(IllegalTransition):
            next_status(status, action, set(Role))


def test_closed_cases_stay_closed() -> None:
    """已结案, 重复 and 不属实 have no way out; only 待评价's 重办 reopens a resolved case."""
    assert not [k for k in TRANSITIONS if k[0] in FINAL_STATUSES]
    assert [
        k
        for k in TRANSITIONS
        if TRANSITIONS[k].to in (S.DISPATCHED, S.IN_PROGRESS) and k[0] in (S.RESOLVED, S.AWAITING_RATING)
    ] == [(S.AWAITING_RATING, A.REOPEN)]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(S.DISPATCHED, A.ACCEPT), (S.TRANSFERRING, A.TAKE_TRANSFER), (S.CLOSED, A.ACCEPT)],
)
def test_one_verb_means_the_action_its_state_has(status: Status, expected: Action) -> None:
    """接单 accepts a dispatched case, or takes a transferred one; elsewhere the table refuses it."""
    assert first_allowed(status, (A.ACCEPT, A.TAKE_TRANSFER)) is expected
