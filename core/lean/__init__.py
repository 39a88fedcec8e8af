"""The lean lane: hot ingest served before Django, with group commit."""
