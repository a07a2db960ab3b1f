"""`/release evidence REL-n` and the "Evidence" button under `/release show`: the packet to the asker's DM."""
from __future__ import annotations

from slack_bolt import App

from commands.evidence_request import request_packet
from commands.text import parse_ref

from bot import evidence_render  # noqa: F401  (registers the evidence_packet upload producer)
from bot.listeners.common import answer_to, just_ack, run
from bot.messages.evidence import EVIDENCE_ACTION
from bot.services import Services


def command(svc: Services, release_id: int, body: dict, tell) -> None:
    user = body["user_id"]
    run(svc, tell, lambda: request_packet(svc.db, svc.actor(user), release_id, svc.clock,
                                          request_key=f"cmd:{body.get('trigger_id')}"), form_of="evidence")


def register(app: App, svc: Services) -> None:
    def clicked(body, action, client):
        user = body["user"]["id"]
        key = f"click:{action.get('action_ts') or body.get('trigger_id')}"
        run(svc, answer_to(svc, client, body),
            lambda: request_packet(svc.db, svc.actor(user), parse_ref(str(action.get("value"))), svc.clock,
                                   request_key=key), form_of="evidence")

    app.action(EVIDENCE_ACTION)(ack=just_ack, lazy=[clicked])
