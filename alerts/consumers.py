from activity.consumers import EventStreamConsumer
from alerts.choices import ALERT_STREAM


class AlertsConsumer(EventStreamConsumer):
    """/ws/alerts: alerts firing, resolved and acknowledged, silences made and
    ended, with ?since= replay."""

    stream = ALERT_STREAM
