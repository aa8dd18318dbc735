import uuid

import pytest

from worker.core import states
from worker.core.states import ALLOWED, IllegalTransition, JobStatus, can_transition, transition

S = JobStatus
LEGAL = {
    (S.QUEUED, S.SUBMITTING),
    (S.QUEUED, S.FAILED),
    (S.QUEUED, S.CANCELLED),
    (S.SUBMITTING, S.QUEUED),
    (S.SUBMITTING, S.RUNNING),
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.CANCELLED),
    (S.RUNNING, S.TRANSFERRING),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.TRANSFERRING, S.SUCCEEDED),
    (S.TRANSFERRING, S.FAILED),
    (S.TRANSFERRING, S.CANCELLED),
    (S.FAILED, S.QUEUED),  # operator retry
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transition_table(current: JobStatus, target: JobStatus) -> None:
    legal = (current, target) in LEGAL
    assert can_transition(current, target) is legal
    if legal:
        assert transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
            transition(current, target)


def test_terminal_states_have_no_way_out_but_an_operator_retry() -> None:
    for status in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
        assert status.terminal
    assert ALLOWED[S.SUCCEEDED] == ALLOWED[S.CANCELLED] == frozenset()
    assert ALLOWED[S.FAILED] == frozenset({S.QUEUED})  # operator retry
    assert not S.RUNNING.terminal


def test_every_status_is_known_to_the_database_model() -> None:
    from models import STATUSES

    assert set(STATUSES) == {s.value for s in S}


def test_the_schemas_copy_of_the_vocabulary_matches_the_state_machine() -> None:
    """``models.job`` spells the statuses out for its CHECK constraint and partial index (models
    imports nothing of worker/): the same words, in the same order."""
    from models import ACTIVE_STATUSES, STATUSES

    assert tuple(s.value for s in states.STATUSES) == STATUSES
    assert tuple(s.value for s in states.ACTIVE) == ACTIVE_STATUSES
    assert set(states.ACTIVE) | set(states.TERMINAL) == set(S)


@pytest.mark.parametrize(
    ("source", "target", "ends", "frees_slot", "orphans_outputs"),
    [
        (S.QUEUED, S.SUBMITTING, False, False, False),
        (S.SUBMITTING, S.RUNNING, False, False, False),
        (S.SUBMITTING, S.QUEUED, False, True, False),
        (S.RUNNING, S.TRANSFERRING, False, True, False),
        (S.TRANSFERRING, S.SUCCEEDED, True, False, False),
        (S.TRANSFERRING, S.FAILED, True, False, True),
        (S.TRANSFERRING, S.CANCELLED, True, False, True),
        (S.RUNNING, S.CANCELLED, True, True, False),
        (S.QUEUED, S.CANCELLED, True, False, False),
        (S.FAILED, S.QUEUED, False, False, False),
    ],
)
def test_what_a_move_sets_off(
    source: JobStatus, target: JobStatus, ends: bool, frees_slot: bool, orphans_outputs: bool
) -> None:
    moved = states.Moved(uuid.uuid4(), source, target)
    assert (moved.ends, moved.frees_slot, moved.orphans_outputs) == (
        ends,
        frees_slot,
        orphans_outputs,
    )
