"""`/release calendar` and `/release blackout …`."""
from __future__ import annotations

from dataclasses import replace

from commands.agenda import agenda
from commands.blackout import add_blackout, list_blackouts, remove_blackout, subscribe, subscription_status
from commands.errors import InputError
from commands.outcome import Outcome
from commands.text import SERVICE_NAME, ParsedCommand
from commands.usage import USAGE

from bot import calendar_sync, feed
from bot.listeners.common import locale_for, run
from bot.messages.common import esc
from bot.messages import calendar as render
from bot.services import Services


def handle(svc: Services, cmd: ParsedCommand, user: str, respond, tell) -> None:
    def show(blocks: list[dict], text: str) -> None:
        respond(blocks=blocks, text=text, response_type="ephemeral", replace_original=False)

    def work() -> Outcome | None:
        if cmd.name == "calendar":
            days_text = cmd.args.get("days", "14")
            if not (days_text.isascii() and days_text.isdigit()):
                raise InputError("days must be a whole number from 1 to 92", field="days", form=USAGE["calendar"])
            service = cmd.args.get("service") or None
            if service and not SERVICE_NAME.match(service):  # it goes into the feed's address and name
                raise InputError("service is a service name, e.g. payments-api", field="service",
                                 form=USAGE["calendar"])
            items = agenda(svc.db, svc.clock.now(), int(days_text), service)
            show(render.agenda(items, int(days_text), service, feed.feed_url(svc, user, service)), "Release calendar")
            return None
        action = cmd.positional[0]
        if action == "list":
            show(render.blackout_list(list_blackouts(svc.db, svc.clock.now()), subscription_status(svc.db)),
                 "Blackouts")
            return None
        actor = svc.actor(user)
        if action == "add":
            return add_blackout(svc.db, actor, cmd.args, svc.clock, svc.policy,
                                locale=locale_for(svc.client, user, cmd.args.get("start"), cmd.args.get("end")))
        if action == "remove":
            return remove_blackout(svc.db, actor, int(cmd.positional[1]), svc.clock, reason=cmd.args.get("reason"))
        outcome = subscribe(svc.db, actor, cmd.args, svc.clock, svc.policy, net=svc.config.calendar_net)
        if outcome.changed:
            # Fetched now rather than at the next refresh, but on the calendar pool: a slow calendar
            # host must not hold the worker everyone's clicks wait for. The person hears the result.
            sub_id = outcome.data["subscription"]
            calendar_sync.sync_soon(svc, then=lambda: tell(esc(calendar_sync.result_text(svc.db, sub_id))))
            outcome = replace(outcome, message=outcome.message + " Fetching it now; you will be told when it is in.")
        return outcome

    run(svc, tell, work, form_of=cmd.name)
