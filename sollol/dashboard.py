"""Run the SOLLOL dashboard inside a Python program."""

from __future__ import annotations

import importlib.util
import os

SETTINGS_MODULE = "sollol_site.settings"


class UnifiedDashboard:
    """Serve the SOLLOL dashboard (web UI, API and periodic jobs) in this process.

    ray_dashboard_port, dask_dashboard_port, enable_ray and enable_dask are accepted
    and kept so existing callers keep working, but are not used yet: the dashboard
    does not start or embed Ray or Dask. Point it at a running cluster with
    SOLLOL_RAY_DASHBOARD_URL / SOLLOL_DASK_DASHBOARD_URL instead.
    """

    def __init__(
        self,
        dashboard_port: int = 8080,
        ray_dashboard_port: int = 8265,
        dask_dashboard_port: int = 8787,
        enable_dask: bool = False,
        enable_ray: bool = False,
        host: str | None = None,
    ) -> None:
        self.dashboard_port = dashboard_port
        self.ray_dashboard_port = ray_dashboard_port
        self.dask_dashboard_port = dask_dashboard_port
        self.enable_dask = enable_dask
        self.enable_ray = enable_ray
        self.host = host

    def run(self, host: str | None = None) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM); call it from the main thread.

        Listen on `host`, else the host given to the constructor, else 127.0.0.1.
        """
        host = host or self.host or "127.0.0.1"
        if importlib.util.find_spec("sollol_site") is None:
            raise RuntimeError(
                "UnifiedDashboard needs the SOLLOL dashboard server (the sollol_site "
                "project), which is not importable here: run it from the SOLLOL "
                "checkout or install the server, or start it with `python manage.py "
                "serve` and point DashboardClient at it"
            )
        # Imported here so that `import sollol` needs only requests.
        try:
            import django
            from django.conf import settings
            from django.core.management import call_command
        except ImportError as exc:
            raise RuntimeError(
                "UnifiedDashboard needs the server requirements "
                f"(requirements.txt): {exc}"
            ) from exc
        if settings.configured and settings.SETTINGS_MODULE != SETTINGS_MODULE:
            raise RuntimeError(
                f"Django is already set up in this process with "
                f"{settings.SETTINGS_MODULE!r}; run the dashboard in its own process "
                "(`python manage.py serve`)"
            )
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        # The settings read these: SOLLOL_HOST decides which Host headers are
        # allowed (any, when listening on all interfaces).
        os.environ["SOLLOL_HOST"] = host
        os.environ["SOLLOL_PORT"] = str(self.dashboard_port)
        django.setup()
        call_command("serve", host=host, port=self.dashboard_port)
