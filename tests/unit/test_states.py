import pytest

from worker.states import ALLOWED, IllegalTransition, JobStatus, can_transition, transition

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
