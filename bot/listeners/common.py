"""What every listener does after its use case: tell the actor, then let delivery run."""
from __future__ import annotations

import json
import logging
from typing import Callable, Optional

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from calendars.timeparse import needs_locale
from commands.errors import InputError
from commands.outcome import Outcome
from commands.roles import holders
from commands.text import ParsedCommand, parse_command
from commands.usage import USAGE
from storage import outbox

from bot.messages.common import outcome_text
from bot.messages.release import error_text
from bot.messages.roles import refusal_note
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
    _tell(tell, outcome_text(outcome.message, outcome.data) + needs_note(svc, outcome))
    if outcome.changed:
        kick(svc, [*(queued or ()), *mine])


def needs_note(svc: Services, outcome: Outcome) -> str:
    """A refusal for a missing role names who does hold it (from the policy: no Slack call on a refusal)."""
    needed = outcome.data.get("needs_roles") if outcome.refused else None
    if not needed:
        return ""
    return refusal_note([holders(svc.policy, role) for role in needed], svc.policy.source)
# chat.postEphemeral cannot reach the person there (a DM between people, a channel the bot is not in): a DM can.
NO_EPHEMERAL = frozenset({"not_in_channel", "channel_not_found", "user_not_in_channel"})


class Answer:
    """The one way a listener answers the person who asked, wherever they asked from.

    Slack's response_url first (slash commands and buttons carry one; a form carries the one of the command
    or button that opened it, in its private_metadata): it reaches the person in DMs and in channels the
    bot is not in. Else chat.postEphemeral in the channel. Where neither can reach them (no response_url,
    or it expired, and the bot is not in the channel or it is a DM), a DM from the bot. Called as
    `answer(text)` or `answer(text, blocks)`."""

    def __init__(self, client, user: str, channel: Optional[str] = None, response_url: Optional[str] = None):
        self.client, self.user, self.channel, self.response_url = client, user, channel, response_url

    def __call__(self, text: str, blocks: Optional[list[dict]] = None) -> None:
        extra = {"blocks": blocks} if blocks else {}
        if self.response_url:
            try:
                sent = WebhookClient(self.response_url, timeout=10).send(
                    text=text, response_type="ephemeral", replace_original=False, **extra)
                if sent.status_code == 200:
                    return
                # Used five times or older than 30 minutes (an inbox row run late): Slack says no.
                log.info("response_url refused the answer (%s %s); answering another way", sent.status_code,
                         sent.body)
            except OSError as exc:
                log.info("response_url unreachable (%s); answering another way", exc)
        if self.channel and not self.channel.startswith("D"):  # a DM's ephemeral only works in the bot's own
            try:
                self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text, **extra)
                return
            except SlackApiError as exc:
                if exc.response.get("error") not in NO_EPHEMERAL:
                    raise
        self.client.chat_postMessage(channel=self.user, text=text, **extra)


def as_respond(answer: Answer) -> Callable[..., None]:
    """Bolt's `respond(text=…, blocks=…)` shape over an Answer, for renderers written against it: the reply
    still falls back to ephemeral or DM when the response_url is refused (used up, or too old)."""
    def respond(text: str = "", blocks: Optional[list[dict]] = None, **_how) -> None:
        answer(text, blocks)
    return respond


def answer_to(svc: Services, client, body: dict) -> Answer:
    """How to answer the person behind this command, click or form submission (see Answer)."""
    meta = metadata(body)
    user = body.get("user_id") or (body.get("user") or {}).get("id") or ""
    urls = [u.get("response_url") for u in body.get("response_urls") or [] if isinstance(u, dict)]
    # a carried response_url answers the person whose command or click opened the form, and nobody else
    carried = meta.get("response_url") if meta.get("response_url_user") == user else None
    response_url = body.get("response_url") or next((u for u in urls if u), None) or carried
    channel = (body.get("channel_id") or (body.get("channel") or {}).get("id") or meta.get("channel")
               or (svc.config.release_channel if body.get("type") == "view_submission" else None))
    return Answer(client, user, channel, response_url if isinstance(response_url, str) else None)


def metadata(body: dict) -> dict:
    """A form's private_metadata (what the bot put there when it opened it), {} for anything else."""
    try:
        meta = json.loads((body.get("view") or {}).get("private_metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def carry_answer(view: dict, body: dict) -> dict:
    """The form `view`, carrying the response_url of the command or click that opens it, so its
    submission (which has none of its own) is answered there too (Answer)."""
    url = body.get("response_url")
    if not url:
        return view
    opener = body.get("user_id") or (body.get("user") or {}).get("id") or ""
    return with_metadata(view, response_url=url, response_url_user=opener)


def with_metadata(view: dict, **extra) -> dict:
    """The form `view` with `extra` added to its private_metadata (a JSON object), or the view as it was
    when its metadata is not one or would pass Slack's 3,000 characters."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return view
    if not isinstance(meta, dict):
        return view
    added = json.dumps({**meta, **extra})
    return {**view, "private_metadata": added} if len(added) <= 3000 else view  # Slack's limit


_PARSED = "releasebot_command_line"  # context: the delivery's command line, parsed (or its InputError)


def command_line(context: dict, body: dict) -> ParsedCommand:
    """The /release command line of this delivery, parsed once before the ack (the replay guard asks
    whether it only reads, then the ack half answers it: a request line is 70 µs of parsing). Raises
    InputError, as parse_command does."""
    parsed = context.get(_PARSED)
    if parsed is None:
        try:
            parsed = parse_command(body.get("text", ""))
        except InputError as exc:
            parsed = exc
        context[_PARSED] = parsed
    if isinstance(parsed, InputError):
        raise parsed
    return parsed


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
