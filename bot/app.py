"""The Bolt app: one App, its listeners, nothing else."""
from __future__ import annotations

import logging
import secrets
from concurrent.futures import Executor, ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped, warning_token_skipped

from bot import inbox, replay
from bot.listeners import bridge, deploy, evidence, home, pages, release, validation, vote, welcome
from bot.services import Services


class _TokenGivenOnce(logging.Filter):
    """Drops Bolt's two warnings that "the token will be ignored", which every start printed right after the
    operator set SLACK_BOT_TOKEN. The app gets the token once, in `client` (ours: SLACK_API_URL, timeout,
    retries), and `authorize` hands it out with no auth.test call. Bolt warns anyway: it reads
    SLACK_BOT_TOKEN from the environment itself whenever no `token` is passed, then finds a client, and a
    client's token beside `authorize`. Passing `token` alone would make Bolt build a client of its own
    (slack.com, no retry policy); passing nothing but `client` would bring back auth.test on the first
    request. Only these two exact messages are dropped; every other Bolt warning shows."""

    _MESSAGES = frozenset({warning_client_prioritized_and_token_skipped(), warning_token_skipped()})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._MESSAGES


_BOLT_LOG = logging.getLogger("slack_bolt.App")
_BOLT_LOG.addFilter(_TokenGivenOnce())


def build_app(svc: Services, listener_executor: Executor | None = None, inbox_lease=None) -> App:
    """The app; `app.inbox` (bot.inbox.Inbox) is what the scheduler sweeps and shutdown stops."""
    if listener_executor is None:
        listener_executor = ThreadPoolExecutor(max_workers=svc.config.workers, thread_name_prefix="listener")
    app = App(
        logger=_BOLT_LOG,
        client=svc.client,
        # Verification stays on in both modes. Bolt itself lets Socket Mode envelopes through (they arrive on
        # the connection the bot opened with its app token); every HTTP request must be signed. In Socket
        # Mode no HTTP request reaches this app at all (bot/server.py), and without a configured secret a
        # random one stands in, so that nothing anyone sends could pass as signed.
        signing_secret=svc.config.signing_secret or secrets.token_hex(32),
        request_verification_enabled=True,
        # A single-workspace bot knows its token. Bolt's default would call
        # auth.test on the first request, making that request fail whenever
        # Slack's Web API is down even though the event itself arrived fine.
        authorize=lambda enterprise_id=None, team_id=None, **_: AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=svc.config.bot_token),
        # Listeners are (ack, lazy) pairs: the ack runs on the HTTP thread and is
        # the response; the lazy part is written to the inbox before that response
        # and runs on a worker thread after it (bot.inbox).
        process_before_response=True,
        listener_executor=listener_executor,
    )
    app.inbox = inbox.install(app, svc, listener_executor, svc.config.workers,
                              **({"lease": inbox_lease} if inbox_lease else {}))
    replay.register(app, svc)  # a second delivery of one click, command or submission never reaches a listener
    release.register(app, svc)
    vote.register(app, svc)
    deploy.register(app, svc)
    validation.register(app, svc)
    welcome.register(app, svc)
    bridge.register(app, svc)
    pages.register(app, svc)
    home.register(app, svc)
    evidence.register(app, svc)
    return app
