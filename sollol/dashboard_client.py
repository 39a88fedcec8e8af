"""Upstream SOLLOL's module name for the client: `from sollol.dashboard_client
import DashboardClient` keeps working (sollol.client is where it lives)."""

from sollol.client import DashboardClient

__all__ = ["DashboardClient"]
