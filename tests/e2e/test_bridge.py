"""The emergency bridge over signed HTTP: channel, invites, pinned card, fallback thread, pins, close."""
from __future__ import annotations

import json

from sqlmodel import Session, select

from storage.models import DecisionLogEntry, Emergency, Outbox

EMERGENCY = ('request service=payments version=1.2.4 type=emergency flags=incident start="2026-11-23 10:00" tz=UTC '
             'duration=60m summary="Stop double charges" incident=INC-4211')


def reply(bot) -> str:
    return bot.emulator.calls_to("response_url")[-1].args.get("text", "")


def emergency(db, rid=1) -> Emergency:
    with Session(db) as s:
        return s.exec(select(Emergency).where(Emergency.release_id == rid)).one()


def opened(bot, user="U0DEV"):
    bot.command(EMERGENCY, user=user)
    bot.deliver()
    return emergency(bot.svc.db)


def test_an_emergency_gets_a_channel_with_the_right_people_and_a_pinned_card(bot, db):
    e = opened(bot)
    [create] = bot.emulator.calls_to("conversations.create")
    assert create.args["name"] == "rel-1-payments-emergency" and create.ok
    assert e.bridge_kind == "channel" and e.bridge_channel == create.response["channel"]["id"]
    members = bot.emulator.channels[e.bridge_channel]["members"]
    assert {"U0DEV", "U0OPS", "U0EL", "U0RM"} <= members and "U0SEC" not in members and "U0QA" not in members
    card = bot.emulator.messages[(e.bridge_channel, e.card_ts)]
    text = json.dumps(card["blocks"])
    assert "INC-4211" in text and "payments" in text and "Stop double charges" in text and "<!date^" in text
    assert (e.bridge_channel, e.card_ts) in bot.emulator.pins
    [link] = [c for c in bot.emulator.calls_to("chat.postMessage") if f"<#{e.bridge_channel}>" in c.args["text"]]
    assert link.args["channel"] == "C0RELEASES"
