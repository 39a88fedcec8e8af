from django.db import models

from activity import streams


class Kind(models.TextChoices):
    """The frameworks the dashboard watches."""

    RAY = "ray", "Ray"
    DASK = "dask", "Dask"


class FrameworkStatus(models.TextChoices):
    """What the last collection of a framework's dashboard found."""

    ACTIVE = "active", "Active"  # its dashboard answered the core endpoints
    UNREACHABLE = "unreachable", "Unreachable"  # no usable answer in time
    AUTH_REQUIRED = "auth_required", "Authentication required"  # 401/403
    NOT_CONFIGURED = "not_configured", "Not configured"  # no URL set


FRAMEWORK_STREAM = streams.register("frameworks", "Frameworks")
