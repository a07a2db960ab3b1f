"""The Go and No-go buttons, and the No-go reason modal."""
from __future__ import annotations

import json
import logging

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands.errors import InputError
from commands.text import UNSTORABLE, parse_ref, unstorable
from commands.vote import cast_vote

from bot.listeners.common import answer_to, carry_answer, just_ack, run
from bot.listeners.home import mark, refresh
from bot.messages import modal
from bot.messages.common import esc
from bot.messages.release import GO_ACTION, NOGO_ACTION
from bot.services import Services

log = logging.getLogger(__name__)


def register(app: App, svc: Services) -> None:
    def go(body, action, client):
        user = body["user"]["id"]
        run(svc, answer_to(svc, client, body),
            lambda: cast_vote(svc.db, svc.actor(user), parse_ref(str(action["value"])), "go", svc.clock,
                              policy=svc.policy, members_of=svc.roles.members))
        refresh(svc, client, body)  # clicked on the App Home tab: it is drawn again with the vote in

    app.action(GO_ACTION)(ack=just_ack, lazy=[go])

    def open_nogo_form(body, action, client):
        try:
            release_id = parse_ref(str(action["value"]))  # bounded: a forged value is no release, not a crash
        except InputError as exc:
            answer_to(svc, client, body)(f":warning: {esc(exc.message)}")
            return
        try:
            channel = (body.get("channel") or {}).get("id", "")  # none on the App Home tab
            client.views_open(trigger_id=body["trigger_id"],
                              view=mark(carry_answer(modal.nogo_modal(f"REL-{release_id}", release_id, channel),
                                                     body), body))
        except SlackApiError as exc:
            log.warning("views.open for No-go failed: %s", exc.response.get("error"))
            answer_to(svc, client, body)(
                f"Slack would not open the No-go form; use `/release nogo REL-{release_id} reason=\"…\"`.")

    app.action(NOGO_ACTION)(ack=just_ack, lazy=[open_nogo_form])

    def reason_of(view) -> str:
        return (((view["state"]["values"].get("reason") or {}).get("reason") or {}).get("value") or "").strip()

    def ack_nogo_reason(ack, view):
        if not reason_of(view):
            ack(response_action="errors", errors={"reason": "A No-go needs a reason."})
            return
        if unstorable(reason_of(view)):
            ack(response_action="errors", errors={"reason": f"The reason {UNSTORABLE}."[:150]})
            return
        ack()

    def nogo(body, view, client):
        reason = reason_of(view)
        if not reason or unstorable(reason):  # answered in the ack
            return
        meta = json.loads(view.get("private_metadata") or "{}")
        user = body["user"]["id"]
        run(svc, answer_to(svc, client, body),
            lambda: cast_vote(svc.db, svc.actor(user), parse_ref(str(meta["release"])), "nogo", svc.clock, note=reason,
                              policy=svc.policy, members_of=svc.roles.members))
        refresh(svc, client, body)  # the form was opened from the App Home tab (mark): draw it again

    app.view(modal.NOGO_CALLBACK)(ack=ack_nogo_reason, lazy=[nogo])
