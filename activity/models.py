from __future__ import annotations

from typing import Any

from django.db import models

from activity.choices import Stream


class Event(models.Model):
    """One observable change; every live stream, replay and feed is read from these."""

    id = models.BigAutoField(primary_key=True)
    stream = models.CharField(max_length=32, choices=Stream.choices)
    type = models.CharField(max_length=40, db_index=True)
    timestamp = models.DateTimeField(db_index=True)
    message = models.TextField()
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["stream", "id"], name="event_stream_id")]

    def __str__(self) -> str:
        return f"#{self.id} {self.type}: {self.message}"

    def as_message(self) -> dict[str, Any]:
        """Return the event as sent on its stream (DESIGN.md §5)."""
        message = {
            "id": self.id,
            "type": self.type,
            "timestamp": self.timestamp.timestamp(),
            "message": self.message,
        }
        for key, value in self.payload.items():
            message.setdefault(key, value)
        return message
