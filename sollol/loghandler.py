"""A logging.Handler that ships an application's log lines to the dashboard."""

from __future__ import annotations

import logging
import traceback

from sollol.batching import BatchSender, in_sender_thread


class DashboardLogHandler(logging.Handler):
    """Queue each record for a background sender; never block, never recurse.

    When the dashboard is away the sender keeps the newest lines up to its bound
    and counts the ones it dropped (`dropped`); the application logs on as usual.
    """

    def __init__(
        self, sender: BatchSender, app_id: str, level: int = logging.INFO
    ) -> None:
        super().__init__(level)
        self.sender = sender
        self.app_id = app_id

    @property
    def dropped(self) -> int:
        """Return how many lines were dropped because the queue was full."""
        return self.sender.stats["dropped"]

    def emit(self, record: logging.LogRecord) -> None:
        if in_sender_thread():
            return  # what sending logs (urllib3, the sender) must not be sent
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self.sender.put(
                {
                    "timestamp": record.created,
                    "level": record.levelname
                    if record.levelname in _KNOWN
                    else record.levelno,
                    "logger": record.name[:200],
                    "message": message,
                    "app_id": self.app_id,
                    "extra": {
                        "module": record.module,
                        "lineno": record.lineno,
                        "thread": record.threadName,
                    },
                }
            )
        except Exception:
            self.handleError(record)


_KNOWN = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
