"""Add, remove and list viewers: people who may look at the dashboard, not change it.

    manage.py viewer add alice                      # asks for a password
    printf '%s\\n' "$PASS" | manage.py viewer add alice --password-stdin
    manage.py viewer remove alice                   # out of the group (the user stays)
    manage.py viewer list

A viewer is a non-staff user in the "viewers" group; they sign in at /login/. The
admin does the same by hand (Users → Groups).
"""

from __future__ import annotations

import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.tokens import VIEWERS_GROUP


class Command(BaseCommand):
    help = "Add, remove or list viewers (may read the page and the API, not write)."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="create the user if needed; make a viewer")
        add.add_argument("username")
        add.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
        remove = actions.add_parser("remove", help="take the user out of the viewers")
        remove.add_argument("username")
        actions.add_parser("list", help="list the viewers")

    def handle(self, *args, action: str, **options) -> None:
        group, _ = Group.objects.get_or_create(name=VIEWERS_GROUP)
        if action == "list":
            for user in group.user_set.order_by("username"):
                state = "" if user.is_active else " (inactive)"
                self.stdout.write(f"{user.get_username()}{state}")
            return
        username = options["username"]
        User = get_user_model()
        if action == "remove":
            user = User.objects.filter(username=username).first()
            if user is None or not user.groups.filter(pk=group.pk).exists():
                raise CommandError(f"{username} is not a viewer")
            user.groups.remove(group)
            self.stdout.write(f"{username} is no longer a viewer")
            return
        user = User.objects.filter(username=username).first()
        if user is None:
            password = self._password(options["password_stdin"])
            try:
                validate_password(password, User(username=username))
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
            with transaction.atomic():
                user = User.objects.create_user(username=username, password=password)
                user.groups.add(group)
            self.stdout.write(f"created viewer {username}; they sign in at /login/")
            return
        user.groups.add(group)
        note = " (staff: may also write)" if user.is_staff else ""
        self.stdout.write(f"{username} is a viewer{note}")

    @staticmethod
    def _password(from_stdin: bool) -> str:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("the passwords differ")
        else:
            raise CommandError(
                "no terminal to ask for a password: use --password-stdin"
            )
        if not password:
            raise CommandError("the password is empty")
        return password
