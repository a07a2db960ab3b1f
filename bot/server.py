"""HTTP: Slack's events endpoint (HTTP mode only), the pipeline API, the feed and a health check, as one WSGI
app for waitress."""
from __future__ import annotations

from typing import Callable, Iterable

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bot.api import api_app
from bot.feed import feed_app
from bot.services import Services


def wsgi_app(app: App, db: Engine, svc: Services) -> Callable:
    # In Socket Mode Slack's requests arrive over the WebSocket (bot/socket_mode.py), so /slack/events is not
    # served: whatever comes there over HTTP is not from Slack, signed or not.
    slack = None if svc.config.app_token else SlackRequestHandler(app, path="/slack/events")
    api = api_app(svc)  # bearer tokens, not Slack signatures
    calendar = feed_app(svc)  # a per-person token in the URL, for calendar clients

    def application(environ, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/slack/events" and slack is not None:
            return slack(environ, start_response)
        if path.startswith("/api/"):
            return api(environ, start_response)
        if path == "/calendar.ics":
            return calendar(environ, start_response)
        if path == "/healthz":
            try:
                with db.connect() as conn:
                    conn.execute(text("SELECT 1"))
                status, body = "200 OK", b"ok\n"
            except Exception:  # noqa: BLE001 - health checks answer, they do not raise
                status, body = "503 Service Unavailable", b"database unavailable\n"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]

    return application
