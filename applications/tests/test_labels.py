"""An application's labels: given at registration (or in metadata.labels, all
upstream clients can send), shown in its answers, read by the alerting engine."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from activity import alerting
from activity.models import Event
from applications.alerting import app_labels
from applications.models import Application
from applications.tests.test_api import APP, assert_refused, post
from tests.openapi import assert_described

# Registrations are written by the lean lane's writer, from a thread of its own.
pytestmark = pytest.mark.django_db(transaction=True)

REGISTER = "/api/applications/register"
HEARTBEAT = "/api/applications/heartbeat"
APP_ID = APP["app_id"]
LABELS = {"team": "search", "env": "prod"}


def register(client, **fields):
    answer = post(client, REGISTER, {**APP, **fields})
    assert answer.status_code == 200, answer.content
    return answer


def heartbeat(client, **fields):
    answer = post(client, HEARTBEAT, {"app_id": APP_ID, **fields})
    assert answer.status_code == 200, answer.content
    return answer


def labels_of(app_id=APP_ID):
    return Application.objects.get(pk=app_id).labels


def updates() -> list[list[str]]:
    """What each app_updated event says changed, in order."""
    return [
        event.payload["changed"]
        for event in Event.objects.filter(type="app_updated").order_by("id")
    ]


def test_a_registration_gives_labels_that_every_answer_shows(client):
    register(client, labels=LABELS)
    assert labels_of() == LABELS

    [listed] = client.get("/api/applications").json()["applications"]
    assert listed["labels"] == LABELS
    assert_described("/api/applications", "GET", client.get("/api/applications").json())
    detail = client.get(f"/api/applications/{APP_ID}").json()
    assert detail["labels"] == LABELS
    assert_described(f"/api/applications/{APP_ID}", "GET", detail)
    # The event of the registration shows the app as the API does.
    registered = Event.objects.get(type="app_registered")
    assert registered.payload["labels"] == LABELS


def test_an_app_without_labels_answers_an_empty_object(client):
    register(client)
    assert labels_of() == {}
    detail = client.get(f"/api/applications/{APP_ID}").json()
    assert detail["labels"] == {}
    assert_described(f"/api/applications/{APP_ID}", "GET", detail)


def test_metadata_labels_are_taken_when_the_body_has_none(client):
    metadata = {"env": "prod", "labels": {"team": "search"}}
    register(client, metadata=metadata)
    assert labels_of() == {"team": "search"}
    # They stay metadata too: the app said them there.
    assert Application.objects.get(pk=APP_ID).metadata == metadata


def test_the_bodys_own_labels_win_over_metadata_labels(client):
    register(client, labels=LABELS, metadata={"labels": {"team": "other"}})
    assert labels_of() == LABELS


@pytest.mark.parametrize(
    "given",
    [
        "team=search",
        ["team"],
        {"1abc": "x"},
        {"a-b": "x"},
        {"team": 3},
        {"team": None},
        {"team": "x" * 201},
        {f"l{i}": "x" for i in range(33)},
    ],
)
def test_invalid_metadata_labels_are_only_metadata(client, given):
    register(client, metadata={"labels": given})
    assert labels_of() == {}
    assert Application.objects.get(pk=APP_ID).metadata == {"labels": given}


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("team=search", "labels must be an object"),
        (["team", "search"], "labels must be an object"),
        ({"1abc": "x"}, "'1abc' is not a label name"),
        ({"a-b": "x"}, "'a-b' is not a label name"),
        ({"team": 3}, "labels.team must be a string"),
        ({"team": {"x": "y"}}, "labels.team must be a string"),
        ({"team": "x" * 201}, "labels.team is longer than 200"),
        ({f"l{i}": "x" for i in range(33)}, "labels may have at most 32 labels"),
    ],
)
def test_bad_labels_are_refused_by_name(client, given, words):
    answer = post(client, REGISTER, {**APP, "labels": given})
    assert_refused(answer)
    assert words in answer.json()["error"]
    assert not Application.objects.exists()


def test_a_registration_at_the_most_labels_is_taken(client):
    most = {f"l{i}": "x" * 200 for i in range(32)}
    register(client, labels=most)
    assert labels_of() == most


def test_registering_again_with_labels_replaces_them(client):
    register(client, labels=LABELS)
    register(client, labels={"team": "ads"})
    assert labels_of() == {"team": "ads"}
    register(client, metadata={"labels": {"rack": "a"}})
    assert labels_of() == {"rack": "a"}
    register(client, labels={})  # an empty object takes them all away
    assert labels_of() == {}
    assert updates() == [["labels"], ["metadata", "labels"], ["metadata", "labels"]]


def test_registering_again_without_labels_keeps_them(client):
    register(client, labels=LABELS)
    register(client, version="2.0.0")
    register(client, version="2.0.0", labels=None, metadata={"labels": "not any"})
    assert labels_of() == LABELS
    assert updates() == [["version"], ["metadata"]]


def test_heartbeats_give_labels_as_registrations_do(client):
    register(client, labels=LABELS)
    heartbeat(client, metadata={"requests": 1})  # none: kept
    assert labels_of() == LABELS
    heartbeat(client, labels=LABELS)  # the same: nothing changed
    heartbeat(client, labels={"team": "ads"})  # only the labels changed
    assert labels_of() == {"team": "ads"}
    heartbeat(client, metadata={"labels": {"rack": "a"}})
    assert labels_of() == {"rack": "a"}
    heartbeat(client, labels={"rack": "a"}, metadata={"labels": {"x": "y"}})
    assert labels_of() == {"rack": "a"}
    assert updates() == [
        ["metadata"],
        ["labels"],
        ["metadata", "labels"],
        ["metadata"],
    ]
    assert_refused(post(client, HEARTBEAT, {"app_id": APP_ID, "labels": {"-": ""}}))
    assert labels_of() == {"rack": "a"}


def test_a_heartbeat_that_registers_an_app_again_gives_its_labels(client):
    answer = heartbeat(client, name="Forgotten", labels=LABELS)
    assert answer.json()["registered"] is True
    assert labels_of() == LABELS


def test_the_alerting_engine_reads_the_labels_of_labelled_apps_only(client):
    register(client, labels=LABELS)
    register(client, app_id="bare")
    register(client, app_id="other", metadata={"labels": {"rack": "b"}})
    expected = {APP_ID: LABELS, "other": {"rack": "b"}}
    assert app_labels() == expected
    check = alerting.Check(None, dt.timedelta(minutes=5), timezone.now())
    assert alerting.labels_of("app", check) == expected
