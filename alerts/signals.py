"""The alerting engine evaluates as soon as something changed, not only on its turn.

Each committed batch of events that says a state changed (a node's status, an
application gone stale, a backend lost, a cluster unreachable) wakes
`evaluate_alerts` (core.wakeups): a rule with for 0 fires within the time of one
evaluation, not of one interval. The alerts' own events wake nothing, nor does
model activity (`model_processing` comes with every router's report: woken by
it, a busy fleet would be evaluated back to back).
"""

from __future__ import annotations

from django.dispatch import receiver

from activity.signals import events_committed
from activity.streams import MODEL_ACTIVITY
from alerts.choices import ALERT_STREAM, EVALUATE_TASK
from core import wakeups


@receiver(events_committed, dispatch_uid="alerts_evaluate_soon")
def evaluate_soon(sender, streams: frozenset[str], **kwargs) -> None:
    if streams - {ALERT_STREAM, MODEL_ACTIVITY}:
        wakeups.wake(EVALUATE_TASK)
