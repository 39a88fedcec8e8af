from django.db import models


class AppStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    STALE = "stale", "Stale"
