"""The incident web view that the daemon serves under `/ui/`; see docs/web.md."""

from runtime.web.routes import web_routes

__all__ = ["web_routes"]
