from django.db import models

from activity import streams


class AppStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    STALE = "stale", "Stale"


APPLICATION_STREAM = streams.register("applications", "Applications")
