"""`/release nc …`: the non-conformance register (commands/nonconformance_register.py has every rule)."""
from __future__ import annotations

from commands import nonconformance_register as register
from commands.outcome import Outcome
from commands.text import ParsedCommand

from bot.listeners.common import run
from bot.messages import nonconformance as render
from bot.services import Services


def handle(svc: Services, cmd: ParsedCommand, user: str, respond, tell) -> None:
    verb = cmd.positional[0]

    def show(blocks: list[dict], text: str) -> None:
        respond(blocks=blocks, text=text, response_type="ephemeral", replace_original=False)

    def work() -> Outcome | None:
        now = svc.clock.now()
        if verb == "list":
            which = cmd.positional[1] if len(cmd.positional) > 1 else None
            entries, total = register.listing(svc.db, user, which, now, limit=render.LIST_PAGE)
            show(render.list_message(entries, total, which), "Non-conformances")
            return None
        nc_id = int(cmd.positional[1])
        if verb == "show":
            entry = register.show(svc.db, nc_id, now)
            for blocks in render.show_messages(entry):  # a long NC in a few messages, nothing cut off
                show(blocks, entry.nc.ref)
            return None
        actor = svc.actor(user)  # the roles Slack confirms, and those it could not check just now
        if verb == "plan":
            return register.plan(svc.db, actor, nc_id, cmd.args, svc.clock)
        if verb == "done":
            return register.done(svc.db, actor, nc_id, cmd.args, svc.clock)
        if verb == "verify":
            return register.verify(svc.db, actor, nc_id, svc.clock)
        return register.close(svc.db, actor, nc_id, svc.clock, root_cause=cmd.args.get("root_cause"))

    run(svc, tell, work, form_of="nc")
