"""Log lines as JSON, one object a line, for log shippers (SOLLOL_LOG_FORMAT=json).

Each line has `time` (ISO 8601, UTC), `level`, `logger` and `message`, and
`exception` with the traceback when there is one. An access-log line of `serve
--access-log` also has `client`, `method`, `path`, `http_version` and `status`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

ACCESS_LOGGER = "uvicorn.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # uvicorn's access line: '%s - "%s %s HTTP/%s" %d' with these arguments.
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple):
            if len(record.args) == 5:
                keys = ("client", "method", "path", "http_version", "status")
                line.update(zip(keys, record.args, strict=True))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
