"""Test evidence and waivers from Slack: `/release test`, `/release waive`, the "Record test result" button."""
from __future__ import annotations

import json
import logging

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands.errors import InputError
from commands.outcome import Actor, Outcome
from commands.record import show_release
from commands.text import ParsedCommand, parse_ref
from commands.validation import Recorder, record_result, waive

from bot.listeners.common import answer_to, carry_answer, just_ack, run
from bot.messages import validation as msg
from bot.messages.common import esc
from bot.services import Services

log = logging.getLogger(__name__)
COMMANDS = ("test", "waive")


def change(svc: Services, cmd: ParsedCommand, actor: Actor) -> Outcome:
    a = cmd.args
    if cmd.name == "test":
        return record_result(svc.db, Recorder(actor), cmd.release_id, a.get("phase"), a.get("status"), a.get("url"),
                             a.get("summary"), a.get("artifact"), svc.clock, svc.policy)
    return waive(svc.db, actor, cmd.release_id, a.get("item"), a.get("reason"), svc.clock, svc.policy)


def register(app: App, svc: Services) -> None:
    def clicked(body, action, client):
        tell = answer_to(svc, client, body)
        try:
            release = show_release(svc.db, parse_ref(str(action["value"]))).release
        except InputError as exc:
            tell(f":warning: {esc(exc.message)}")
            return
        view = msg.record_modal(release, body.get("channel", {}).get("id", ""))
        try:
            client.views_open(trigger_id=body["trigger_id"], view=carry_answer(view, body))
        except SlackApiError as exc:
            log.warning("views.open (test result) failed: %s", exc.response.get("error"))
            tell(":warning: Slack would not open the form; please try again.")

    app.action(msg.RECORD_ACTION)(ack=just_ack, lazy=[clicked])

    def submitted(body, view, client):
        meta = json.loads(view.get("private_metadata") or "{}")
        v = msg.read_record(view)
        user = body["user"]["id"]
        # the answer (recorded, what the gate still misses, or why not) is a message the person keeps
        run(svc, answer_to(svc, client, body),
            lambda: record_result(svc.db, Recorder(svc.actor(user)), parse_ref(str(meta["release"])), v["phase"],
                                  v["status"], v["url"], v["summary"], v["artifact"], svc.clock, svc.policy),
            form_of="test")

    app.view(msg.RECORD_CALLBACK)(ack=just_ack, lazy=[submitted])
