"""Each Slack delivery counts once: a replay, or Slack's own retry, is dropped before any listener runs.

A signed request stays valid for Slack's five-minute signature window, so
whoever captures one (a proxy log, a browser extension) could send it again: a
replayed Go click would bring back a withdrawn vote, a replayed `blackout add`
would make a second blackout. Each delivery has an identity Slack gives it; the
first delivery claims it (storage.replay), and a second one is answered "already
done" without reaching a listener. Slack's retries (X-Slack-Retry-Num) are the
same delivery again and are dropped without a second answer.

The claim is a write before the ack, so it waits for the database only briefly
(storage.db.ack_write). When another writer holds it longer, nothing is claimed
and the person is told, inside the ack, that the bot is busy and nothing was
recorded; sent again, the same request is then the first. A read (show, list,
the calendar, a button that opens a form) changes nothing when sent twice, so it
goes on unclaimed instead: reads never wait for a writer.

A slash command or a click whose work is done after the ack is claimed in the
same transaction as its inbox row (bot.inbox), so its ack takes the write lock
once. Nothing is looked up before its listener runs: its ack half only answers
(it writes nothing and calls no Slack API), and a copy delivered again meets the
first at the claim's unique key, where it writes nothing and is "already done".
Measured under a burst of 64 on SQLite, the two separate commits were the ack's
largest cost (each a BEGIN IMMEDIATE queued behind every other writer); then the
read that asked "seen already?" of every first delivery, for the rare second one
(about 0.4 ms of an ack's 1.7 ms of CPU). Only when the inbox is busy is it asked,
so that a copy of a delivery already done is not told "nothing was recorded".
"""
from __future__ import annotations

import hashlib
import logging
import threading
from typing import Callable

from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from commands.errors import InputError
from commands.text import parse_command
from storage import replay as seen
from storage.db import ACK_WAIT, Busy

from bot.listeners.common import answer_to, command_line
from bot.messages.aftercare import FOLLOWUP_ACTION, RETRO_ACTION, START_DEPLOY
from bot.messages.help import MENU_ACTIONS
from bot.messages.home import SHOW_ACTION as HOME_SHOW
from bot.messages.bridge import ASSESS_FORM, LOG_ACTION, LOG_PAGE_ACTION
from bot.messages.modal import CLASSIFY_ACTION
from bot.messages.release import NOGO_ACTION

from bot.services import Services

log = logging.getLogger(__name__)

ALREADY_DONE = (":information_source: Already done: Slack delivered this request again, and it was handled the "
                "first time; nothing changed.")
BUSY = ":hourglass: releasebot is busy; nothing was recorded. Try again in a moment."
MAX_KEY = 255  # storage.models.SeenDelivery.key
_READ_COMMANDS = frozenset({"help", "roles", "show", "list", "calendar", "deploy"})  # deploy opens the checklist form
# (the bare /release menu's buttons only read or open the request form)
_FORM_BUTTONS = frozenset({START_DEPLOY, FOLLOWUP_ACTION, RETRO_ACTION, NOGO_ACTION, CLASSIFY_ACTION, *MENU_ACTIONS,
                           ASSESS_FORM, LOG_ACTION, LOG_PAGE_ACTION, HOME_SHOW})  # these open a form or only read


def identity(body: dict) -> str | None:
    """What makes this delivery the same as another one, or None when it is not claimed.

    Slash command: its trigger_id. Button or menu: the person and the action's action_ts
    (Slack's timestamp of that click). Modal submission: the view id and the view's hash,
    which Slack changes whenever the view is redrawn. Event: its event_id. Shortcut: its trigger_id."""
    kind = body.get("type")
    if body.get("command"):
        key = f"command:{body['trigger_id']}" if body.get("trigger_id") else None
    elif kind == "block_actions":
        user = (body.get("user") or {}).get("id")
        ts = next((a.get("action_ts") for a in body.get("actions") or [] if a.get("action_ts")), None)
        key = f"action:{user}:{ts}" if user and ts else None
    elif kind == "view_submission":
        view = body.get("view") or {}
        key = f"view:{view['id']}:{view.get('hash', '')}" if view.get("id") else None
    elif kind == "event_callback":
        key = f"event:{body['event_id']}" if body.get("event_id") else None
    elif kind in ("shortcut", "message_action"):
        key = f"shortcut:{body['trigger_id']}" if body.get("trigger_id") else None
    else:
        key = None  # options loads, url_verification, view_closed: nothing to do twice
    if key and len(key) > MAX_KEY:
        key = f"{key.split(':', 1)[0]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


_READS = "releasebot_changes_nothing"  # request.context: changes_nothing(body), decided once per delivery


def reads_only(request: BoltRequest) -> bool:
    """changes_nothing(request.body), as the guard found it (parsing a command line once per delivery)."""
    known = request.context.get(_READS)
    return changes_nothing(request.body) if known is None else known


class _Pending(threading.local):
    """The claim this thread's delivery defers to its inbox row (the ack half and the inbox's record run on
    the thread that received the delivery; Bolt hands the lazy half a deep copy of the request, so the
    request's context cannot carry it)."""
    key: str | None = None
    claimed: bool = False


_pending = _Pending()


def deferred_claim() -> str | None:
    """The identity the inbox row being written must claim with it, or None (claimed already, or nothing
    to claim: a listener's second lazy half does not claim it again)."""
    return _pending.key if not _pending.claimed else None


def settle_claim() -> None:
    """This thread's deferred claim needs no more doing: taken with an inbox row, or answered busy or
    "already done" (nothing was written, so nothing may be claimed after the ack half either)."""
    _pending.claimed = True


def claim_pending() -> bool:
    """Whether this thread's delivery still owes its claim (it was deferred, and nothing took it yet)."""
    return _pending.key is not None and not _pending.claimed


def _defers(body: dict) -> bool:
    # Commands and clicks do their writes after the ack; a form's submission may write in its ack half
    # (bot/listeners/release.py) and an event's listener runs whole before the answer: those claim first.
    return bool(body.get("command")) or body.get("type") == "block_actions"


def register(app: App, svc: Services) -> None:
    """Install the guard as the first global middleware (after Bolt's signature check)."""
    executor = app.listener_runner.listener_executor

    def guard(req: BoltRequest, body: dict, next_: Callable[[], None]) -> BoltResponse | None:
        _pending.key, _pending.claimed = None, False  # whatever this thread's last delivery left
        if req.lazy_only:  # a lazy listener re-dispatched (FaaS): its delivery was claimed already
            return next_()
        key = identity(body)
        if key is None:
            return next_()
        reads = req.context[_READS] = changes_nothing(body, req.context)
        if not reads and _defers(body):
            # Bolt runs the listener after the middleware returns, on this thread: the inbox's record takes
            # the claim with its row. Every command and click does its work after the ack; an ack half that
            # answers on its own records nothing and wrote nothing, so left unclaimed it is harmless to see
            # again.
            _pending.key = key
            return next_()
        try:
            # a read does not wait for the claim at all: unclaimed, it is still harmless
            first = seen.claim(svc.db, key, svc.clock.now(), wait=0 if reads else ACK_WAIT)
        except Busy:
            if reads:
                log.info("database busy: %s goes on unclaimed (it changes nothing)", key)
                return next_()
            log.warning("database busy: %s answered busy, nothing claimed", key)
            return busy_answer(svc, body, executor)
        except SQLAlchemyError:
            # No database, no work either: let the listener fail and say so in its own words.
            log.exception("could not record delivery %s", key)
            return next_()
        if first:
            req.context["ack"] = _ReleasingAck(lambda: forget(svc, key, executor))
            return next_()
        return _second(svc, req, body, key, executor)

    app.middleware(guard)


def done_already(svc: Services, key: str | None) -> bool:
    """Whether this delivery's claim was taken already (a read: it never waits for a writer)."""
    try:
        return key is not None and seen.seen_already(svc.db, key)
    except SQLAlchemyError:
        log.exception("could not look up delivery %s", key)
        return False


def second_delivery(svc: Services, req: BoltRequest, executor) -> BoltResponse:
    """The answer when the claim was already taken: Slack's retry gets an empty 200, a replay "already done"."""
    return _second(svc, req, req.body, identity(req.body), executor)


def _second(svc: Services, req: BoltRequest, body: dict, key: str | None, executor) -> BoltResponse:
    if req.headers.get("x-slack-retry-num"):
        log.info("dropped Slack's retry of %s", key)
        return BoltResponse(status=200, body="")
    log.warning("dropped a second delivery of %s", key)
    return _already_done(svc, body, executor)


class _ReleasingAck(Ack):
    """An ack that gives the claim back when the listener sent the form back with errors:
    nothing was done, and Slack may carry the same view hash on the corrected submission."""

    def __init__(self, forget: Callable[[], None]):
        super().__init__()
        self._forget = forget

    def __call__(self, *args, **kwargs) -> BoltResponse:
        response = super().__call__(*args, **kwargs)
        if kwargs.get("response_action") == "errors":
            self._forget()
        return response


def changes_nothing(body: dict, context: dict | None = None) -> bool:
    """A delivery that only reads or opens a form: done twice, nothing is done twice. `context`: the
    delivery's, where its parsed command line is kept for the ack half (bot.listeners.common.command_line)."""
    if body.get("command"):
        try:
            cmd = parse_command(body.get("text", "")) if context is None else command_line(context, body)
        except InputError:
            return True  # answered with the error in the ack
        return cmd.name in _READ_COMMANDS or (cmd.name == "blackout" and cmd.positional[:1] == ("list",))
    if body.get("type") == "block_actions":
        ids = [a.get("action_id") for a in body.get("actions") or []]
        return bool(ids) and all(i in _FORM_BUTTONS for i in ids)
    if body.get("type") == "event_callback":
        # the Home tab opened: it is drawn (bot/listeners/home.py), nothing is written
        return (body.get("event") or {}).get("type") == "app_home_opened"
    return False


def forget(svc: Services, key: str, executor) -> None:
    try:
        seen.release(svc.db, key)
    except Busy:
        # Still held: forget it after the ack, waiting as long as that takes.
        executor.submit(_forget_later, svc, key)
    except SQLAlchemyError:
        log.exception("could not release delivery %s", key)


def _forget_later(svc: Services, key: str) -> None:
    try:
        seen.release(svc.db, key, in_ack=False)
    except SQLAlchemyError:
        log.exception("could not release delivery %s", key)


def busy_answer(svc: Services, body: dict, executor) -> BoltResponse:
    """Nothing was claimed or done: say so in the ack. A form stays open, as filled in, to send again."""
    if body.get("type") == "view_submission":
        field = _first_input(body.get("view") or {})
        if field:
            return Ack()(response_action="errors", errors={field: BUSY})
    return _answer(svc, body, executor, BUSY)


def _first_input(view: dict) -> str | None:
    blocks = [b.get("block_id") for b in view.get("blocks") or [] if b.get("type") == "input"]
    blocks = blocks or list(((view.get("state") or {}).get("values") or {}))
    return next((b for b in blocks if b), None)


def _already_done(svc: Services, body: dict, executor) -> BoltResponse:
    """Tell the person their request was already handled, the way this kind of delivery allows."""
    return _answer(svc, body, executor, ALREADY_DONE)


def _answer(svc: Services, body: dict, executor, text: str) -> BoltResponse:
    if body.get("command"):
        return Ack()(text=text, response_type="ephemeral")  # the ack text is the answer
    if (body.get("user") or {}).get("id"):
        # A click on its response_url; a closed form where it was opened from, or by DM (Answer).
        executor.submit(_tell_safely, lambda: answer_to(svc, svc.client, body)(text))
    return BoltResponse(status=200, body="")


def _tell_safely(send: Callable[[], object]) -> None:
    try:
        send()
    except (SlackApiError, OSError) as exc:
        log.warning("could not answer the user: %s", exc)
