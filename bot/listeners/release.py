"""`/release …` and the request modal."""
from __future__ import annotations

import json
import logging

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands.classification import Answers
from commands.errors import FieldErrors, InputError
from commands.outcome import Actor, Outcome
from commands.record import list_releases, show_release
from commands.release import (accept_misclassification, cancel_release, override_flags, edit_release,
                              request_release)
from commands.request import missing_fields, parse_flags
from commands.text import USAGE, ParsedCommand, parse_command
from commands.aftercare import record_task, sign_off, validate
from commands.deferred import record_step
from commands.deploy import Deployer, decide_rollback, finish_deployment
from commands.vote import cast_vote, withdraw_vote

from storage import outbox
from storage.db import ACK_WAIT, Busy

from bot.listeners import calendar, deploy
from bot.listeners.common import ephemeral, just_ack, run
from bot.messages import modal
from bot.messages.release import error_text, help_text, list_message, record_message
from bot.replay import BUSY
from bot.services import Services

log = logging.getLogger(__name__)


def register(app: App, svc: Services) -> None:
    # Each listener is split in two: an ack function that runs on the HTTP
    # thread and answers Slack at once, and a lazy function that does the work
    # on a worker thread afterwards. So the ack never queues behind earlier
    # requests' database and Slack calls.
    def ack_command(ack, body):
        try:
            cmd = parse_command(body.get("text", ""))
        except InputError as exc:
            ack(response_type="ephemeral", text=error_text(exc.message, exc.form))
            return
        if cmd.name == "help":
            ack(response_type="ephemeral", text=help_text())
            return
        ack()

    def do_command(body, respond, client):
        try:
            cmd = parse_command(body.get("text", ""))
        except InputError:
            return  # answered in the ack
        if cmd.name == "help":
            return

        def tell(text: str) -> None:
            respond(text=text, response_type="ephemeral", replace_original=False)

        user = body["user_id"]
        if cmd.name == "request":
            _request(svc, cmd, body, tell, client)
        elif cmd.name == "deploy":
            deploy.open_form(svc, client, body["trigger_id"], cmd.release_id, body.get("channel_id", ""), tell,
                             "deploy")
        elif cmd.name in ("show", "list"):
            _read(svc, cmd, user, respond, tell)
        elif cmd.name in ("calendar", "blackout"):
            calendar.handle(svc, cmd, user, respond, tell)
        else:
            run(svc, tell, lambda: _change(svc, cmd, user), form_of=cmd.name)

    app.command("/release")(ack=ack_command, lazy=[do_command])

    def ack_request_form(ack, body, view, context):
        raw, answers = modal.read_request(view["state"]["values"])
        try:
            # Written before the ack: the modal must stay open to show errors,
            # and the view id makes a double submit find the release it made.
            # Requesting needs no role, so no role lookup (and no Slack call) here.
            with outbox.collecting() as queued:
                outcome = request_release(svc.db, Actor(body["user"]["id"]), raw, answers, svc.clock, svc.policy,
                                          request_key=f"view:{view['id']}", lock_wait=ACK_WAIT)
        except FieldErrors as exc:
            ack(response_action="errors", errors=modal.field_errors(exc.errors))
            return
        except Busy:  # another writer holds the database: nothing written, the form stays open to send again
            ack(response_action="errors", errors={"summary": BUSY})
            return
        except Exception:  # noqa: BLE001 - keep the form open with a sentence, log the rest
            log.exception("request form failed")
            ack(response_action="errors", errors={"summary": "Something went wrong on our side; nothing was "
                                                             "saved. Please submit again."})
            return
        # For the lazy half (carried through the inbox): what to say, and the messages to send at once.
        context["outcome"] = {"message": outcome.message, "changed": outcome.changed, "queued": list(queued)}
        ack()

    def after_request_form(body, view, context, client):
        done = context.get("outcome")
        if not done:
            return
        channel = json.loads(view.get("private_metadata") or "{}").get("channel") or svc.config.release_channel
        run(svc, ephemeral(client, channel, body["user"]["id"]),
            lambda: Outcome(done["message"], changed=done["changed"]), queued=done.get("queued"))

    app.view(modal.REQUEST_CALLBACK)(ack=ack_request_form, lazy=[after_request_form])

    def redraw_form(body, client):
        view = body["view"]
        raw, answers = modal.read_request(view["state"]["values"], fill_type=False)
        channel = json.loads(view.get("private_metadata") or "{}").get("channel", "")
        try:
            client.views_update(view_id=view["id"], hash=view.get("hash"),
                                view=modal.request_modal(svc.policy, raw, answers, channel))
        except SlackApiError as exc:  # hash_conflict: the user kept typing; their next change redraws it
            log.info("views.update skipped: %s", exc.response.get("error"))

    app.action(modal.CLASSIFY_ACTION)(ack=just_ack, lazy=[redraw_form])


def _request(svc: Services, cmd: ParsedCommand, body: dict, tell, client) -> None:
    args = dict(cmd.args)
    user = body["user_id"]
    try:
        answers = parse_flags(args["flags"]) if (args.get("flags") or "").strip() else None
    except FieldErrors as exc:
        tell(error_text(f"{exc.field}: {exc.errors[exc.field]}", USAGE["request"]))
        return
    # The answers are required like any field: without flags= (or flags=none) the form opens to ask them.
    missing = missing_fields(args)
    args.pop("flags", None)
    if not missing:
        def work() -> Outcome:
            try:
                return request_release(svc.db, Actor(user), args, answers, svc.clock, svc.policy,
                                       request_key=f"cmd:{body.get('trigger_id')}")
            except FieldErrors as exc:
                raise InputError(f"{exc.field}: {exc.errors[exc.field]}", field=exc.field,
                                 form=USAGE["request"]) from None
        run(svc, tell, work)
        return
    if not args.get("tz"):
        args["tz"] = _user_tz(client, user)
    view = modal.request_modal(svc.policy, args, answers or Answers(), body.get("channel_id", ""))
    try:
        client.views_open(trigger_id=body["trigger_id"], view=view)
    except SlackApiError as exc:
        log.warning("views.open failed: %s", exc.response.get("error"))
        tell(":warning: Slack would not open the request form (it must open within 3 seconds). "
             f"Try again, or give every field in one line: `{USAGE['request']}`")


def _user_tz(client, user: str) -> str:
    try:
        return client.users_info(user=user)["user"].get("tz") or "UTC"
    except (SlackApiError, OSError, KeyError):
        return "UTC"


def _read(svc: Services, cmd: ParsedCommand, user: str, respond, tell) -> None:
    def work():
        if cmd.name == "show":
            rec = show_release(svc.db, cmd.release_id)
            respond(blocks=record_message(rec), text=f"{rec.release.ref}", response_type="ephemeral",
                    replace_original=False)
        else:
            which = cmd.positional[0] if cmd.positional else None
            releases = list_releases(svc.db, Actor(user), which, svc.clock)
            respond(blocks=list_message(releases, which), text="Releases", response_type="ephemeral",
                    replace_original=False)
    run(svc, tell, work, form_of=cmd.name)


def _change(svc: Services, cmd: ParsedCommand, user: str) -> Outcome:
    actor = svc.actor(user)
    a, rid = cmd.args, cmd.release_id
    if cmd.name == "go":
        return cast_vote(svc.db, actor, rid, "go", svc.clock, note=a.get("note"), role_hint=a.get("role"))
    if cmd.name == "nogo":
        return cast_vote(svc.db, actor, rid, "nogo", svc.clock, note=a.get("reason"), role_hint=a.get("role"))
    if cmd.name == "withdraw":
        return withdraw_vote(svc.db, actor, rid, svc.clock)
    if cmd.name == "cancel":
        return cancel_release(svc.db, actor, rid, a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "edit":
        return edit_release(svc.db, actor, rid, a, svc.clock, svc.policy)
    if cmd.name == "accept":
        return accept_misclassification(svc.db, actor, rid, a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "override":
        return override_flags(svc.db, actor, rid, a.get("kind", ""), a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "reschedule":
        if "start" not in a:
            raise InputError("reschedule needs start=", field="start", form=USAGE["reschedule"])
        return edit_release(svc.db, actor, rid, a, svc.clock, svc.policy)
    who = Deployer.of(actor)  # keeps the unresolved roles: "could not check" is not a refusal
    if cmd.name == "done":
        if "outcome" not in a:
            raise InputError("done needs outcome=success, rolled_back or failed", field="outcome", form=USAGE["done"])
        return finish_deployment(svc.db, who, rid, a["outcome"], svc.clock, svc.policy, note=a.get("note"),
                                 link=a.get("link"))
    if cmd.name == "rollback":
        return decide_rollback(svc.db, who, rid, a.get("reason", ""), svc.clock)
    if cmd.name == "signoff":
        return sign_off(svc.db, actor, rid, svc.clock, svc.policy, role_hint=a.get("role"))
    if cmd.name == "followup":
        return record_task(svc.db, actor, rid, "followup", {"evidence": a.get("evidence", ""),
                                                           "actions": a.get("actions", "")}, svc.clock, svc.policy)
    if cmd.name == "retro":
        return record_task(svc.db, actor, rid, "retrospective", {"notes": a.get("notes", ""),
                                                                "actions": a.get("actions", "")}, svc.clock,
                           svc.policy)
    if cmd.name == "validate":
        return validate(svc.db, actor, rid, a.get("note", ""), svc.clock, svc.policy)
    if cmd.name == "step":
        return record_step(svc.db, actor, rid, cmd.positional[0], a, svc.clock, svc.policy)
    raise InputError(f"/release {cmd.name} is not available", form=USAGE["help"])
