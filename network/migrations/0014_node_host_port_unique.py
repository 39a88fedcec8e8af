"""One node per host:port, enforced by the database.

Before, only the code kept a second node of the same host:port out (a check,
then an insert): two adds at once could both store it. Duplicates such a race
left are folded into the oldest node first (the others are removed, with their
history, which the oldest's own history covers).
"""

from django.db import migrations, models
from django.db.models import Count, Min


def fold_duplicates(apps, schema_editor):
    node = apps.get_model("network", "OllamaNode")
    doubled = (
        node.objects.values("host", "port")
        .annotate(n=Count("id"), first=Min("id"))
        .filter(n__gt=1)
    )
    for pair in doubled:
        node.objects.filter(host=pair["host"], port=pair["port"]).exclude(
            pk=pair["first"]
        ).delete()


class Migration(migrations.Migration):
    dependencies = [("network", "0013_not_found_status")]

    operations = [
        migrations.RunPython(fold_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="ollamanode",
            constraint=models.UniqueConstraint(
                fields=("host", "port"), name="node_host_port"
            ),
        ),
    ]
