"""Upstream SOLLOL's module name for the dashboard: `from sollol.unified_dashboard
import UnifiedDashboard` keeps working (sollol.dashboard is where it lives)."""

from sollol.dashboard import UnifiedDashboard, run_unified_dashboard

__all__ = ["UnifiedDashboard", "run_unified_dashboard"]
