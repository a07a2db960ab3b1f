"""What every listener does after its use case: tell the actor, then let delivery run."""
from __future__ import annotations

import logging
from typing import Callable

from slack_sdk.errors import SlackApiError

from calendars.timeparse import needs_locale
from commands.errors import InputError
from commands.outcome import Outcome
from commands.text import USAGE
from storage import outbox

from bot.messages.common import outcome_text
from bot.messages.release import error_text
from bot.services import Services

log = logging.getLogger(__name__)
OOPS = (":warning: Something went wrong on our side and nothing was changed. "
        "Try again in a moment; if it keeps happening, tell the bot's operators.")


def run(svc: Services, tell: Callable[[str], None], work: Callable[[], Outcome | None],
        form_of: str | None = None, queued: list[str] | None = None) -> None:
    """Run a use case and tell the actor what happened, whatever happened.

    `queued`: rows the change queued before (a form's ack half did the work), sent with its own.

    Input errors and refusals come back as sentences; anything unexpected is
    logged with its traceback here and never shown to the user."""
    try:
        with outbox.collecting() as mine:
            outcome = work()
    except InputError as exc:
        _tell(tell, error_text(exc.message, exc.form or (USAGE.get(form_of) if form_of else None)))
        return
    except Exception:  # noqa: BLE001 - the user gets a sentence, the log gets the traceback
        log.exception("use case failed")
        _tell(tell, OOPS)
        return
    if outcome is None:
        return
    _tell(tell, outcome_text(outcome.message, outcome.data))
    if outcome.changed:
        kick(svc, [*(queued or ()), *mine])


def ephemeral(client, channel: str, user: str) -> Callable[[str], None]:
    """Tell one person something in a channel, visible to them only."""
    return lambda text: client.chat_postEphemeral(channel=channel, user=user, text=text)


def just_ack(ack) -> None:
    """The ack half of a listener whose work is all in its lazy half."""
    ack()


def kick(svc: Services, queued: list[str]) -> None:
    """Send the rows this change queued now, instead of at the next scheduler tick.

    Only those (by key), on the actor's own worker: other people's rows (and a slow
    channel's backlog) are the delivery loop's, so one click never waits for them. A
    row that must wait for an earlier one of its release waits for the scheduler too.
    Failure is fine: the rows stay in the outbox for the scheduler."""
    if not queued:
        return
    try:
        svc.delivery.run_once(keys=list(queued))
    except Exception:  # noqa: BLE001
        log.exception("immediate delivery failed; the scheduler will retry")


def _tell(tell: Callable[[str], None], text: str) -> None:
    try:
        tell(text)
    except (SlackApiError, OSError) as exc:
        log.warning("could not answer the user: %s", exc)


def user_profile(client, user: str) -> tuple[str | None, str | None]:
    """The requester's zone and locale from users.info; (None, None) when Slack cannot say."""
    try:
        found = client.users_info(user=user, include_locale=True)["user"]
        return found.get("tz") or None, found.get("locale") or None
    except (SlackApiError, OSError, KeyError):
        return None, None


def locale_for(client, user: str, *starts: str | None) -> str | None:
    """Only a start like "12/03" depends on the locale; only then is Slack asked."""
    return user_profile(client, user)[1] if any(needs_locale(s) for s in starts) else None
