"""The "More" button under a paged list (`/release list`, `/release blackout list`): the next page,
shown to the person who clicked, only to them."""
from __future__ import annotations

from slack_bolt import App

from commands.blackout import list_blackouts, subscription_status
from commands.outcome import Actor
from commands.record import list_releases

from bot.listeners.common import answer_to, just_ack, run
from bot.messages import calendar
from bot.messages.ids import MORE_ACTION, parse_more
from bot.messages.release import LIST_PAGE, list_message
from bot.services import Services

_FILTERS = {"pending", "upcoming", "mine"}


def register(app: App, svc: Services) -> None:
    def more(body, action, client):
        tell = answer_to(svc, client, body)  # the button's response_url, else a DM: never lost

        def show(blocks: list[dict], text: str) -> None:
            tell(text, blocks)

        def work() -> None:
            page = parse_more(str(action.get("value", "")))
            if page is None:  # not a value the bot made: nothing to show
                tell(":warning: That list is no longer available; run the command again.")
                return
            kind, which, offset = page
            if kind == "releases":
                which = which if which in _FILTERS else None
                rows = list_releases(svc.db, Actor(body["user"]["id"]), which, svc.clock, limit=LIST_PAGE + 1,
                                     offset=offset)
                show(list_message(rows, which, offset, more=len(rows) > LIST_PAGE), "Releases")
            else:
                show(calendar.blackout_list(list_blackouts(svc.db, svc.clock.now()), subscription_status(svc.db),
                                            offset), "Blackouts")
        run(svc, tell, work)

    app.action(MORE_ACTION)(ack=just_ack, lazy=[more])
