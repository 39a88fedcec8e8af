"""Signing in to the page: staff and viewers, on a page of the dashboard's own.

The admin's login takes staff only. A viewer (a non-staff user in the "viewers"
group, core.tokens.VIEWERS_GROUP) signs in here, sees the page and reads the
API; only staff change things.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm

from core.tokens import may_view


class ViewerAuthenticationForm(AuthenticationForm):
    """Refuse accounts that are neither staff nor viewers, saying so."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "not_a_viewer": (
            "This account may not view the dashboard: ask an administrator to add "
            "it to the viewers group."
        ),
    }

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not may_view(user):
            raise forms.ValidationError(
                self.error_messages["not_a_viewer"], code="not_a_viewer"
            )


login = auth_views.LoginView.as_view(
    template_name="dashboard/login.html",
    authentication_form=ViewerAuthenticationForm,
    redirect_authenticated_user=True,
)
logout = auth_views.LogoutView.as_view()
