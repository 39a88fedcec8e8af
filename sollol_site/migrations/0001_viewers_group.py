"""The "viewers" group: users in it who are not staff may look but not change."""

from django.db import migrations

VIEWERS = "viewers"  # core.tokens.VIEWERS_GROUP, as of this migration


def add_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name=VIEWERS)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=VIEWERS).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(add_group, remove_group)]
