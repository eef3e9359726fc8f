"""The node lifecycle: only legal moves, checked exhaustively and by random walks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.domain.lifecycle import (
    TRANSITIONS,
    NodeState,
    check_transition,
    parse_state,
    return_from_down,
)
from suanli.errors import IllegalTransitionError, ValidationError

S = NodeState


def test_the_documented_path_is_legal() -> None:
    path = [S.REGISTERED, S.QUALIFYING, S.READY, S.DRAINING, S.READY, S.DRAINING, S.QUARANTINED]
    for a, b in itertools.pairwise(path):
        check_transition("n", a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.REGISTERED, S.READY),
        (S.QUALIFYING, S.DRAINING),
        (S.QUARANTINED, S.READY),
        (S.READY, S.QUALIFYING),
        (S.READY, S.REGISTERED),
    ],
)
def test_shortcuts_are_refused_with_what_is_allowed(a: NodeState, b: NodeState) -> None:
    with pytest.raises(IllegalTransitionError) as info:
        check_transition("n", a, b)
    assert info.value.allowed == sorted(s.value for s in TRANSITIONS[a])


def test_down_returns_only_to_where_it_was() -> None:
    check_transition("n", S.DOWN, S.READY, previous=S.READY)
    with pytest.raises(IllegalTransitionError):
        check_transition("n", S.DOWN, S.READY, previous=S.REGISTERED)
    with pytest.raises(IllegalTransitionError):
        check_transition("n", S.DOWN, S.READY)


def test_every_state_can_go_down_and_down_returns() -> None:
    for state in NodeState:
        if state is not S.DOWN:
            assert S.DOWN in TRANSITIONS[state]
            check_transition("n", S.DOWN, return_from_down(state), previous=state)
    assert return_from_down(None) is S.REGISTERED


@given(st.lists(st.sampled_from(list(NodeState)), max_size=40))
def test_random_walks_never_reach_ready_without_qualifying(moves: list[NodeState]) -> None:
    state, previous, qualified = S.REGISTERED, None, False
    for target in moves:
        try:
            check_transition("n", state, target, previous)
        except IllegalTransitionError:
            continue
        previous = state
        if target is S.QUALIFYING:
            qualified = True
        if target is S.QUARANTINED:
            qualified = False
        if target is S.READY:
            assert qualified, "ready without having passed qualifying"
        state = target


def test_parse_state() -> None:
    assert parse_state("ready") is S.READY
    with pytest.raises(ValidationError, match="one of"):
        parse_state("asleep")
