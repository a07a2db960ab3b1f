"""`/release …` and the request modal."""
from __future__ import annotations

import json
import logging
from datetime import datetime

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands.classification import Answers
from commands.emergency import assess, open_emergency
from commands.errors import FieldErrors, InputError
from commands.outcome import Actor, Outcome
from commands.record import list_releases, show_release
from commands.release import (accept_misclassification, cancel_release, override_flags, edit_release,
                              request_release)
from calendars.timeparse import needs_locale
from commands.request import missing_fields, parse_flags, start_prefill
from commands.roles import all_holders
from commands.replan import reschedule_to_slot
from commands.text import ParsedCommand, parse_command, parse_ref
from commands.usage import USAGE
from commands.aftercare import record_task, sign_off, validate
from commands.deferred import record_step
from commands.deploy import Deployer, finish_deployment
from commands.misclassification import record_misclassification
from commands.rollback import decide_rollback, form_times
from commands.vote import cast_vote, withdraw_vote

from storage import outbox
from storage.db import ACK_WAIT, Busy

from bot.listeners import bridge, calendar, deploy, evidence, metrics, nonconformance, validation
from bot.listeners.common import (answer_to, as_respond, carry_answer, command_line, just_ack, locale_for, run,
                                  user_profile)
from bot.messages import modal
from bot.messages import help as help_msg, roles as roles_msg
from bot.messages.release import LIST_PAGE, RESCHEDULE_ACTION, error_text, list_message, record_messages
from bot.replay import BUSY
from bot.services import Services

log = logging.getLogger(__name__)


def register(app: App, svc: Services) -> None:
    # Each listener is split in two: an ack function that runs on the HTTP
    # thread and answers Slack at once, and a lazy function that does the work
    # on a worker thread afterwards. So the ack never queues behind earlier
    # requests' database and Slack calls.
    def ack_command(ack, body, context):
        try:
            cmd = command_line(context, body)
        except InputError as exc:
            ack(response_type="ephemeral", text=error_text(exc.message, exc.form))
            return
        if not (body.get("text") or "").strip():
            text, blocks = help_msg.menu()
            ack(response_type="ephemeral", text=text, blocks=blocks)
            return
        if cmd.name == "help":
            text, blocks = (help_msg.help_topic(cmd.positional[0], svc.clock.now()) if cmd.positional
                            else help_msg.help_overview())
            ack(response_type="ephemeral", text=text, blocks=blocks)
            return
        ack()

    def do_command(body, client):
        try:
            cmd = parse_command(body.get("text", ""))
        except InputError:
            return  # answered in the ack
        if cmd.name == "help":
            return

        tell = answer_to(svc, client, body)
        respond = as_respond(tell)  # replies with blocks (show, list, calendar, roles) take the same path
        user = body["user_id"]
        if cmd.name == "request":
            _request(svc, cmd, body, tell, client)
        elif cmd.name == "emergency":
            run(svc, tell, lambda: open_emergency(svc.db, Actor(user), cmd.args, svc.clock, svc.policy,
                                                  request_key=f"cmd:{body.get('trigger_id')}"))
        elif cmd.name == "deploy":
            deploy.open_form(svc, client, body["trigger_id"], cmd.release_id, body.get("channel_id", ""), tell,
                             "deploy", user, body=body)
        elif cmd.name in ("show", "list"):
            _read(svc, cmd, user, respond, tell)
        elif cmd.name == "roles":
            run(svc, tell, lambda: _roles(svc, respond))
        elif cmd.name in ("calendar", "blackout"):
            calendar.handle(svc, cmd, user, respond, tell)
        elif cmd.name in ("log", "bridge"):
            bridge.handle(svc, cmd, body, tell)
        elif cmd.name == "nc":
            nonconformance.handle(svc, cmd, user, respond, tell)
        elif cmd.name == "evidence":
            evidence.command(svc, cmd.release_id, body, tell)
        elif cmd.name == "metrics":
            metrics.handle(svc, cmd, body, respond, tell)
        else:
            run(svc, tell, lambda: _change(svc, cmd, user, client), form_of=cmd.name)

    app.command("/release")(ack=ack_command, lazy=[do_command])

    def ack_request_form(ack, body, view, context):
        raw, answers = modal.read_request(view["state"]["values"])
        try:
            # Written before the ack: the modal must stay open to show errors,
            # and the view id makes a double submit find the release it made.
            # Requesting needs no role, so no role lookup (and no Slack call) here.
            with outbox.collecting() as queued:
                outcome = request_release(svc.db, Actor(body["user"]["id"]), raw, answers, svc.clock, svc.policy,
                                          request_key=f"view:{view['id']}", lock_wait=ACK_WAIT,
                                          from_form=True)
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
        window = outcome.data.get("window")
        context["outcome"] = {"message": outcome.message, "changed": outcome.changed, "queued": list(queued),
                              "window": [window[0].isoformat(), window[1].isoformat(), window[2]] if window else None,
                              "reading": outcome.data.get("reading")}
        ack()

    def after_request_form(body, view, context, client):
        done = context.get("outcome")
        if not done:
            return
        window = done.get("window")
        data = {"window": (datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1]), window[2])
                if window else None, "reading": done.get("reading")}
        run(svc, answer_to(svc, client, body),
            lambda: Outcome(done["message"], changed=done["changed"], data=data), queued=done.get("queued"))

    app.view(modal.REQUEST_CALLBACK)(ack=ack_request_form, lazy=[after_request_form])

    def redraw_form(body, client):
        view = body["view"]
        raw, answers = modal.read_request(view["state"]["values"], fill_type=False)
        meta = json.loads(view.get("private_metadata") or "{}")
        try:
            client.views_update(view_id=view["id"], hash=view.get("hash"),
                                view=modal.request_modal(svc.policy, raw, answers, meta.get("channel", ""),
                                                         meta.get("start_hint") or ""))
        except SlackApiError as exc:  # hash_conflict: the user kept typing; their next change redraws it
            log.info("views.update skipped: %s", exc.response.get("error"))

    app.action(modal.CLASSIFY_ACTION)(ack=just_ack, lazy=[redraw_form])

    # "Reschedule to <slot>" on a flagged release: the reschedule decision, to that slot.
    def reschedule_clicked(body, action, client):
        user = body["user"]["id"]
        release_id, _, slot = str(action.get("value") or "").partition(":")
        run(svc, answer_to(svc, client, body),
            lambda: reschedule_to_slot(svc.db, svc.actor(user), parse_ref(release_id), slot, svc.clock, svc.policy),
            form_of="reschedule")

    app.action(RESCHEDULE_ACTION)(ack=just_ack, lazy=[reschedule_clicked])

    # The bare `/release` menu: each button does what it says, answered where it was clicked.
    def menu_clicked(body, action, client):
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id", "")
        tell = answer_to(svc, client, body)
        respond = as_respond(tell)

        which = action["action_id"]
        if which == help_msg.MENU_REQUEST:
            _open_request_form(svc, client, body["trigger_id"], user, channel, {}, None, tell, body)
        elif which == help_msg.MENU_MINE:
            _read(svc, ParsedCommand("list", positional=("mine",)), user, respond, tell)
        elif which == help_msg.MENU_CALENDAR:
            calendar.handle(svc, ParsedCommand("calendar"), user, respond, tell)
        else:
            text, blocks = help_msg.help_overview()
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

    for menu_action in help_msg.MENU_ACTIONS:
        app.action(menu_action)(ack=just_ack, lazy=[menu_clicked])

    # The global shortcut "Request a release" (manifest.yml): the request form, from anywhere.
    def shortcut_used(body, client):
        user = body["user"]["id"]
        _open_request_form(svc, client, body["trigger_id"], user, "", {}, None, _dm(client, user), body)

    app.shortcut(help_msg.REQUEST_SHORTCUT)(ack=just_ack, lazy=[shortcut_used])


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
                                       request_key=f"cmd:{body.get('trigger_id')}",
                                       locale=locale_for(client, user, args.get("start")))
            except FieldErrors as exc:
                raise InputError(f"{exc.field}: {exc.errors[exc.field]}", field=exc.field,
                                 form=USAGE["request"]) from None
        run(svc, tell, work)
        return
    _open_request_form(svc, client, body["trigger_id"], user, body.get("channel_id", ""), args, answers, tell, body)


def _open_request_form(svc: Services, client, trigger_id: str, user: str, channel: str, args: dict,
                       answers: Answers | None, tell, body: dict) -> None:
    """The request form, prefilled with what was typed; the outcome is said in `channel` (or the release channel)."""
    asks_slack = not args.get("tz") or needs_locale(args.get("start"))
    tz, locale = user_profile(client, user) if asks_slack else (None, None)
    args["tz"] = args.get("tz") or tz or "UTC"
    # The pickers take only a real date and HH:mm: show the reading of what was typed, keep the text in a hint.
    start, hint = start_prefill(args.get("start"), args["tz"], svc.clock.now(), locale)
    args["start"] = start or ""
    view = modal.request_modal(svc.policy, args, answers or Answers(), channel, hint)
    try:
        client.views_open(trigger_id=trigger_id, view=carry_answer(view, body))
    except SlackApiError as exc:
        error = exc.response.get("error") or "unknown_error"
        details = "; ".join((exc.response.get("response_metadata") or {}).get("messages") or [])
        log.warning("views.open failed: %s %s", error, details)
        if error in ("expired_trigger_id", "invalid_trigger_id"):
            why = f"Slack would not open the request form ({error}: it must open within 3 seconds)."
        else:
            why = f"Slack refused the form: {error}{f' ({details})' if details else ''}."
        tell(f":warning: {why} Try again, or give every field in one line: `{USAGE['request']}`")


def _dm(client, user: str):
    """A shortcut has no channel and no response_url: anything to say goes to the person's DM with the bot."""
    return lambda text: client.chat_postMessage(channel=user, text=text)


def _roles(svc: Services, respond) -> None:
    """Who holds each role, the groups read through the roles cache (one Slack call per group at most)."""
    text, blocks = roles_msg.roles_message(all_holders(svc.policy, svc.roles.members), svc.policy.source)
    respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)


def _read(svc: Services, cmd: ParsedCommand, user: str, respond, tell) -> None:
    def work():
        if cmd.name == "show":
            rec = show_release(svc.db, cmd.release_id)
            for blocks in record_messages(rec):  # a long record in a few messages, nothing cut off
                respond(blocks=blocks, text=f"{rec.release.ref}", response_type="ephemeral",
                        replace_original=False)
        else:
            which = cmd.positional[0] if cmd.positional else None
            releases = list_releases(svc.db, Actor(user), which, svc.clock, limit=LIST_PAGE + 1)
            respond(blocks=list_message(releases, which, more=len(releases) > LIST_PAGE), text="Releases",
                    response_type="ephemeral", replace_original=False)
    run(svc, tell, work, form_of=cmd.name)


def _rollback_times(svc: Services, a: dict, user: str, client):
    """decided= / restored= of `/release done … outcome=rolled_back`, read in the person's zone (their Slack
    profile; UTC when Slack cannot say); None when neither is given (commands.rollback's rule)."""
    if "decided" not in a and "restored" not in a:
        return None
    if a.get("outcome") != "rolled_back":
        raise InputError("decided= and restored= go with outcome=rolled_back", field="decided", form=USAGE["done"])
    try:
        return form_times(a.get("decided"), a.get("restored"), user_profile(client, user)[0] or "UTC",
                          svc.clock.now())
    except FieldErrors as exc:
        raise InputError("; ".join(f"{k}=: {v}" for k, v in exc.errors.items()), field=next(iter(exc.errors)),
                         form=USAGE["done"]) from None


def _change(svc: Services, cmd: ParsedCommand, user: str, client) -> Outcome:
    actor = svc.actor(user)
    a, rid = cmd.args, cmd.release_id
    locale = lambda: locale_for(client, user, a.get("start"))  # noqa: E731
    if cmd.name == "go":
        return cast_vote(svc.db, actor, rid, "go", svc.clock, note=a.get("note"), role_hint=a.get("role"),
                         policy=svc.policy, members_of=svc.roles.members)
    if cmd.name == "nogo":
        return cast_vote(svc.db, actor, rid, "nogo", svc.clock, note=a.get("reason"), role_hint=a.get("role"),
                         policy=svc.policy, members_of=svc.roles.members)
    if cmd.name == "withdraw":
        return withdraw_vote(svc.db, actor, rid, svc.clock)
    if cmd.name == "assess":
        return assess(svc.db, actor, rid, a, svc.clock, svc.policy)
    if cmd.name == "cancel":
        return cancel_release(svc.db, actor, rid, a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "edit":
        return edit_release(svc.db, actor, rid, a, svc.clock, svc.policy, locale=locale())
    if cmd.name == "accept":
        return accept_misclassification(svc.db, actor, rid, a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "misclassified":
        return record_misclassification(svc.db, actor, rid, a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "override":
        return override_flags(svc.db, actor, rid, a.get("kind", ""), a.get("reason", ""), svc.clock, svc.policy)
    if cmd.name == "reschedule":
        if "start" not in a:
            raise InputError("reschedule needs start=", field="start", form=USAGE["reschedule"])
        return edit_release(svc.db, actor, rid, a, svc.clock, svc.policy, locale=locale())
    if cmd.name in validation.COMMANDS:
        return validation.change(svc, cmd, actor)
    who = Deployer.of(actor)  # keeps the unresolved roles: "could not check" is not a refusal
    if cmd.name == "done":
        if "outcome" not in a:
            raise InputError("done needs outcome=success, rolled_back or failed", field="outcome", form=USAGE["done"])
        return finish_deployment(svc.db, who, rid, a["outcome"], svc.clock, svc.policy, note=a.get("note"),
                                 link=a.get("link"), times=_rollback_times(svc, a, user, client))
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
