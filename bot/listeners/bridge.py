"""The emergency bridge in Slack: `/release log`, `/release bridge close`, the :pushpin: reaction and the
card's buttons (assessment items, the decision log)."""
from __future__ import annotations

import html
import json
import logging

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands import bridge, decision_log, emergency
from commands.errors import InputError
from commands.outcome import Outcome
from commands.text import ParsedCommand, parse_ref
from storage import outbox

from bot.listeners.common import answer_to, carry_answer, just_ack, kick, run
from bot.messages import bridge as render
from bot.messages.common import esc
from bot.services import Services

log = logging.getLogger(__name__)
PIN = "pushpin"


def handle(svc: Services, cmd: ParsedCommand, body: dict, tell) -> None:
    """`/release log …` and `/release bridge close …` (parsed by commands.text)."""
    user = body["user_id"]
    if cmd.name == "log":
        run(svc, tell, lambda: decision_log.add_entry(
            svc.db, svc.actor(user), cmd.release_id, cmd.args.get("text", ""), svc.clock,
            source_key=f"command:{body.get('trigger_id')}", correct=cmd.args.get("correct")), form_of="log")
    else:
        run(svc, tell, lambda: bridge.close_bridge(svc.db, svc.actor(user), cmd.release_id,
                                                   cmd.args.get("summary", ""), svc.clock, svc.policy),
            form_of="bridge")


def _assess(svc: Services, user: str, release_id: int, fields: dict) -> Outcome:
    return emergency.assess(svc.db, svc.actor(user), release_id, fields, svc.clock, svc.policy)


def read_message(client, e, channel: str, ts: str) -> dict | None:
    """The pinned message itself, if it is in this bridge and the bot can read it; None otherwise."""
    try:
        if e.bridge_kind == "thread":
            resp = client.conversations_replies(channel=channel, ts=e.bridge_thread_ts, oldest=ts, latest=ts,
                                                inclusive=True, limit=2)
            found = [m for m in resp.get("messages") or [] if m.get("ts") == ts]
        else:
            resp = client.conversations_history(channel=channel, latest=ts, inclusive=True, limit=1)
            found = [m for m in resp.get("messages") or [] if m.get("ts") == ts]
            if not found:  # a reply in one of the bridge channel's threads
                resp = client.conversations_replies(channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True,
                                                    limit=2)
                found = [m for m in resp.get("messages") or [] if m.get("ts") == ts]
    except (SlackApiError, OSError) as exc:
        log.info("pin in %s at %s not logged: the message could not be read (%s)", channel, ts, exc)
        return None
    return found[0] if found else None


def register(app: App, svc: Services) -> None:
    def on_reaction(event, client):
        item = event.get("item") or {}
        if event.get("reaction") != PIN or item.get("type") != "message":
            return
        channel, ts = str(item.get("channel") or ""), str(item.get("ts") or "")
        bridges = bridge.at(svc.db, channel) if channel and ts else []
        for e in bridges:
            if e.bridge_kind == "thread" and e.bridge_thread_ts is None:
                continue
            message = read_message(client, e, channel, ts)
            if message is None:
                continue  # not in this bridge (another thread of the release channel), or unreadable
            author = message.get("user") or message.get("bot_id") or "unknown"
            # Slack sends the text with &, <, > escaped; the log keeps what was written, renderers escape it.
            text = html.unescape(message.get("text") or "")
            try:
                with outbox.collecting() as queued:
                    decision_log.log_pin(svc.db, e.release_id, channel, ts, author, text,
                                         event.get("user") or "", svc.clock)
            except ValueError:
                log.warning("pin in %s at %s not logged: its timestamp is not Slack's", channel, ts)
                return
            kick(svc, queued)  # the card's entry count, now rather than at the next tick
            return

    app.event("reaction_added")(ack=just_ack, lazy=[on_reaction])

    def assess_button(fields: dict):
        def work(body, action, client):
            user = body["user"]["id"]
            run(svc, answer_to(svc, client, body),
                lambda: _assess(svc, user, parse_ref(str(action["value"])), fields))
        return work

    app.action(render.ASSESS_SCOPE)(ack=just_ack, lazy=[assess_button({"scope": "confirmed"})])
    app.action(render.ASSESS_CI)(ack=just_ack, lazy=[assess_button({"ci": "passed"})])

    def open_assess_form(body, action, client):
        channel = body["channel"]["id"]
        tell = answer_to(svc, client, body)
        try:
            v = bridge.view(svc.db, parse_ref(str(action["value"])))
        except InputError as exc:
            tell(f":warning: {esc(exc.message)}")
            return
        if v is None:
            return
        try:
            # the submission has no response_url of its own: it is answered on this click's (carry_answer)
            client.views_open(trigger_id=body["trigger_id"],
                              view=carry_answer(render.assess_modal(v.release, v.emergency, channel), body))
        except SlackApiError as exc:
            log.warning("views.open for the assessment failed: %s", exc.response.get("error"))
            tell(f'Slack would not open the form; use `/release assess {v.release.ref} blast_radius="…" '
                 'rollback="…"`.')

    app.action(render.ASSESS_FORM)(ack=just_ack, lazy=[open_assess_form])

    def assess_form(body, view, client):
        values = view["state"]["values"]
        fields = {k: ((values.get(k) or {}).get(k) or {}).get("value") for k in ("blast_radius", "rollback")}
        fields = {k: v.strip() for k, v in fields.items() if v and v.strip()}
        meta = json.loads(view.get("private_metadata") or "{}")
        user = body["user"]["id"]
        if fields:
            run(svc, answer_to(svc, client, body),
                lambda: _assess(svc, user, parse_ref(str(meta.get("release"))), fields))

    app.view(render.ASSESS_CALLBACK)(ack=just_ack, lazy=[assess_form])

    def show_log(body, action, client):
        value = str(action.get("value") or "")
        ref, _, page = value.partition(":")
        tell = answer_to(svc, client, body)

        def work():
            release, lines = decision_log.load(svc.db, parse_ref(ref))
            tell(f"Decision log of {release.ref}",
                 render.log_page(release.ref, release.id, lines, int(page) if page.isdigit() else 0))
        run(svc, tell, work)

    app.action(render.LOG_ACTION)(ack=just_ack, lazy=[show_log])
    app.action(render.LOG_PAGE_ACTION)(ack=just_ack, lazy=[show_log])
