"""SOLLOL client library: report an application to the dashboard, or run one.

Importing this package needs only `requests`; the dashboard server (Django) is
imported only when UnifiedDashboard.run() is called.
"""

from __future__ import annotations

from sollol.client import DashboardClient
from sollol.dashboard import UnifiedDashboard
from sollol.tracing import Tracer

__version__ = "0.9.1"

__all__ = ["DashboardClient", "Tracer", "UnifiedDashboard", "__version__"]
