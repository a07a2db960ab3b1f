"""The Bolt app: one App, its listeners, nothing else."""
from __future__ import annotations

from concurrent.futures import Executor

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult

from bot import replay
from bot.listeners import deploy, release, vote
from bot.services import Services


def build_app(svc: Services, listener_executor: Executor | None = None) -> App:
    socket_mode = bool(svc.config.app_token)
    app = App(
        client=svc.client,
        signing_secret=svc.config.signing_secret or "unused-in-socket-mode",
        # Socket Mode frames are authenticated by the app token, not signed.
        request_verification_enabled=not socket_mode,
        # A single-workspace bot knows its token. Bolt's default would call
        # auth.test on the first request, making that request fail whenever
        # Slack's Web API is down even though the event itself arrived fine.
        authorize=lambda enterprise_id=None, team_id=None, **_: AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=svc.config.bot_token),
        # Listeners are (ack, lazy) pairs: the ack runs on the HTTP thread and is
        # the response; the lazy part runs on a worker thread after it.
        process_before_response=True,
        **({"listener_executor": listener_executor} if listener_executor else {}),
    )
    replay.register(app, svc)  # a second delivery of one click, command or submission never reaches a listener
    release.register(app, svc)
    vote.register(app, svc)
    deploy.register(app, svc)
    return app
