"""SOLLOL_ALERT_RULES (a file of rules) and the env's channels."""

from __future__ import annotations

import json

import pytest

from alerts import config, services
from alerts.choices import Source
from alerts.models import Channel, Rule

pytestmark = pytest.mark.django_db

RULES = """
rules:
  - name: gpu_memory_high       # a built-in, changed
    threshold: 0.8
    for_seconds: 120
  - name: lab-down              # a rule of its own
    kind: node_down
    subjects: "10.1.*"
    severity: warning
"""


@pytest.fixture(autouse=True)
def builtin():
    services.ensure_builtin_rules()


def test_a_rules_file_changes_built_ins_and_adds_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    assert config.load_rules_file(str(path)) == 2
    gpu = Rule.objects.get(name="gpu_memory_high")
    assert (gpu.threshold, gpu.for_seconds, gpu.source) == (0.8, 120.0, Source.BUILTIN)
    lab = Rule.objects.get(name="lab-down")
    assert (lab.kind, lab.subjects, lab.severity, lab.source) == (
        "node_down", "10.1.*", "warning", Source.FILE,
    )  # fmt: skip
    # The same in JSON, without lab-down: it goes, as the file says.
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps({"rules": [{"name": "gpu_memory_high", "threshold": 0.7}]})
    )
    config.load_rules_file(str(path))
    assert not Rule.objects.filter(name="lab-down").exists()
    assert Rule.objects.get(name="gpu_memory_high").threshold == 0.7


@pytest.mark.parametrize(
    "text, words",
    [
        ("rules: [{name: x, kind: nonsense}]", "rules[0]: kind must be one of"),
        ("rules: [{name: node_down, for_seconds: soon}]", "rules[0]: for_seconds"),
        ("rules: [{kind: node_down}]", "rules[0]: name is required"),
        (
            "rules: [{name: a, kind: node_down}, {name: a}]",
            "rules[1]: a is named twice",
        ),
        ("rules: [{name: node_down, kind: app_stale}]", "kind of node_down is"),
        ("rules: {name: a}", 'must hold {"rules"'),
        ("rules: [\n  - name: [", "not valid YAML"),
    ],
)
def test_a_bad_rules_file_is_refused_by_entry_and_field(tmp_path, text, words):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    before = list(Rule.objects.values_list("name", "threshold", "for_seconds"))
    with pytest.raises(config.RulesFileError, match=words.replace("[", r"\[")):
        config.load_rules_file(str(path))
    assert list(Rule.objects.values_list("name", "threshold", "for_seconds")) == before


def test_the_envs_channels_follow_the_env(settings):
    Channel.objects.create(
        name="mine", kind="slack", url="http://x/", source=Source.API
    )
    settings.SOLLOL_ALERT_WEBHOOKS = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    settings.SOLLOL_ALERT_WEBHOOK_SECRET = "s"
    settings.SOLLOL_ALERT_EMAIL_TO = ["ops@example.org"]
    settings.SOLLOL_SMTP_URL = "smtp://127.0.0.1:25"
    settings.SOLLOL_ALERTMANAGER_URL = "http://127.0.0.1:9093"
    config.sync_env_channels()
    made = dict(Channel.objects.values_list("name", "kind"))
    assert made == {
        "mine": "slack",
        "webhook-1": "webhook",
        "webhook-2": "webhook",
        "email": "email",
        "alertmanager": "alertmanager",
    }
    assert Channel.objects.get(name="webhook-2").secret == "s"
    settings.SOLLOL_ALERT_WEBHOOKS = []
    settings.SOLLOL_ALERT_EMAIL_TO = []
    settings.SOLLOL_ALERTMANAGER_URL = ""
    config.sync_env_channels()
    assert list(Channel.objects.values_list("name", flat=True)) == ["mine"]
