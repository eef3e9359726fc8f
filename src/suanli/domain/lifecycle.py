"""Node lifecycle: the states and the only legal moves between them.

registered → qualifying → ready ⇄ draining → quarantined | down

* ``quarantined`` is left only by re-qualifying (after a repair).
* ``down`` is set by the liveness check when heartbeats stop, or by the operator; a node
  comes back from ``down`` only to the state it had before (``previous_state``), or the
  operator sends it to ``qualifying`` or ``quarantined``. So ``down`` is never a shortcut
  to ``ready`` for a node that has not qualified.
"""

from __future__ import annotations

from enum import StrEnum

from suanli.errors import IllegalTransitionError, ValidationError


class NodeState(StrEnum):
    REGISTERED = "registered"
    QUALIFYING = "qualifying"
    READY = "ready"
    DRAINING = "draining"
    QUARANTINED = "quarantined"
    DOWN = "down"


S = NodeState
TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    S.REGISTERED: frozenset({S.QUALIFYING, S.QUARANTINED, S.DOWN}),
    S.QUALIFYING: frozenset({S.READY, S.QUARANTINED, S.DOWN}),
    S.READY: frozenset({S.DRAINING, S.QUARANTINED, S.DOWN}),
    S.DRAINING: frozenset({S.READY, S.QUARANTINED, S.DOWN}),
    S.QUARANTINED: frozenset({S.QUALIFYING, S.DOWN}),
    S.DOWN: frozenset({S.QUALIFYING, S.QUARANTINED}),  # plus the return, see allowed_from
}

# States a node may be created in (a fleet file describes nodes that may already serve).
INITIAL_STATES = frozenset({S.REGISTERED, S.QUALIFYING, S.READY})


def parse_state(value: str, field: str = "state") -> NodeState:
    try:
        return NodeState(value)
    except ValueError:
        names = ", ".join(s.value for s in NodeState)
        raise ValidationError(f"unknown node state {value!r}; one of: {names}", field) from None


def allowed(current: NodeState, previous: NodeState | None = None) -> frozenset[NodeState]:
    """Where a node may go from ``current``; ``previous`` matters only when it is down."""
    if current is S.DOWN:
        return TRANSITIONS[current] | {return_from_down(previous)}
    return TRANSITIONS[current]


def allowed_from(current: NodeState, previous: NodeState | None = None) -> list[str]:
    return sorted(s.value for s in allowed(current, previous))


def check_transition(
    node: str, current: NodeState, target: NodeState, previous: NodeState | None = None
) -> None:
    """Raise IllegalTransitionError unless ``current → target`` is a legal move."""
    if target not in allowed(current, previous):
        raise IllegalTransitionError(
            node, current.value, target.value, allowed_from(current, previous)
        )


def return_from_down(previous: NodeState | None) -> NodeState:
    """The state a node resumes when its heartbeat returns."""
    if previous is None or previous is NodeState.DOWN:
        return NodeState.REGISTERED
    return previous
