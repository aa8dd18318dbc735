"""Which queue each task goes to, and which queues a worker may be told to take from."""

from __future__ import annotations

import pytest
from celery import Celery

from worker.broker.app import celery_config
from worker.core.errors import ConfigurationError
from worker.core.settings import Settings, get_settings, reset_settings


def route(app: Celery, task: str) -> str:
    return app.amqp.router.route({}, task)["queue"].name


@pytest.fixture
def app() -> Celery:
    app = Celery("routes-under-test")
    app.conf.update(celery_config(Settings(broker_url="memory://")))
    return app


@pytest.mark.parametrize("task", ["imagegen.transfer", "imagegen.discard"])
def test_copies_to_storage_go_to_the_transfer_queue(app: Celery, task: str) -> None:
    assert route(app, task) == "imagegen.transfer"


@pytest.mark.parametrize(
    "task",
    [
        "imagegen.submit",
        "imagegen.poll",
        "imagegen.dispatch",
        "imagegen.reconcile",
        "imagegen.webhook",
        "imagegen.webhook_sweep",
        "imagegen.prune",
    ],
)
def test_the_steps_that_keep_jobs_moving_go_to_the_steps_queue(app: Celery, task: str) -> None:
    assert route(app, task) == "imagegen"


def test_a_worker_takes_every_queue_by_default() -> None:
    assert Settings().worker_queue_list == ["imagegen", "imagegen.transfer"]


def test_queues_can_be_chosen_and_are_cleaned_up() -> None:
    settings = Settings(worker_queues=" imagegen.transfer , imagegen.transfer,")
    assert settings.worker_queue_list == ["imagegen.transfer"]


@pytest.mark.parametrize("value", ["celery", "imagegen,transfers", " , "])
def test_an_unknown_or_empty_queue_list_names_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEGEN_WORKER_QUEUES", value)
    reset_settings()
    try:
        with pytest.raises(ConfigurationError) as caught:
            get_settings()
    finally:
        reset_settings()
    message = str(caught.value)
    assert "IMAGEGEN_WORKER_QUEUES" in message
    assert "imagegen, imagegen.transfer" in message
    assert "Value error" not in message
