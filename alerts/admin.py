from django.contrib import admin

from activity.admin import ReadOnlyAdmin
from alerts.models import Alert, Channel, Delivery, Rule, Silence


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "severity", "threshold", "for_seconds", "enabled")
    list_filter = ("enabled", "severity", "kind", "source")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts are the evaluation's own (acknowledge and silence on the page or
    the API): the admin looks."""

    list_display = ("rule", "subject", "state", "severity", "started_at", "silenced")
    list_filter = ("state", "severity", "silenced")
    search_fields = ("subject", "message")


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("rule", "subject", "starts_at", "ends_at", "created_by", "comment")


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "min_severity", "enabled", "failing_since")
    exclude = ("secret",)  # set from the environment or the API, never shown


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("channel", "status", "rule", "state", "attempts", "created")
    list_filter = ("state", "status")
    readonly_fields = [f.name for f in Delivery._meta.fields]
