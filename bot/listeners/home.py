"""The App Home tab: app_home_opened publishes the viewer's Home (commands.home, bot/messages/home.py).

Its buttons are the channel's own (Go, No-go, Start deployment: their listeners are in vote.py and
deploy.py) plus Show. Those listeners end with `refresh`, which re-publishes the tab of a person who
acted from it (a click on the tab, or a form opened from it: `mark`), from the record as it now is. Reads and publishes go through one HomeCache per process (bot/home_cache.py)."""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands.errors import InputError
from commands.home import home_view
from commands.record import show_release
from commands.text import parse_ref

from bot.home_cache import HomeCache
from bot.home_metrics import this_week
from bot.listeners.common import answer_to, just_ack, metadata, run, with_metadata
from bot.messages import home as render
from bot.messages.common import esc
from bot.messages.release import record_messages
from bot.services import Services

log = logging.getLogger(__name__)


class Home:
    """One process's App Home: read (at most once a minute per person), render, publish (rate-limited)."""

    def __init__(self, svc: Services):
        self.svc, self.cache = svc, HomeCache(svc.clock)

    def publish(self, client, user: str, *, fresh: bool = False) -> bool:
        """Publish `user`'s Home; `fresh`: read the record again even if a minute has not passed.
        False when nothing went out (the person's publishes are throttled, or Slack refused)."""
        if fresh:
            self.cache.forget(user)
        data = self.cache.cached(user)
        if data is None:
            svc = self.svc
            model = home_view(svc.db, svc.actor(user), svc.clock, svc.policy)
            metrics = this_week(svc.db, svc.clock.now(), svc.policy) if model.release_manager else None
            data = self.cache.store(user, (model, metrics))
        if not self.cache.may_publish(user):
            log.info("App Home for %s not published: throttled (its last view stays shown)", user)
            return False
        try:
            client.views_publish(user_id=user, view=render.home_view(*data))
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                self.cache.hold(user, float(exc.response.headers.get("Retry-After", 30) or 30))
            log.warning("views.publish for %s failed: %s", user, exc.response.get("error"))
            return False
        return True


def home_of(svc: Services) -> Home:
    """The process's one Home (its cache is shared by the tab and the listeners that refresh it)."""
    home = getattr(svc, "_home", None)
    if home is None:
        home = Home(svc)
        setattr(svc, "_home", home)
    return home


def from_home(body: dict) -> bool:
    """A click on the Home tab, or the submission of a form opened from it (`mark`)."""
    if (body.get("view") or {}).get("type") == "home":
        return True
    user = (body.get("user") or {}).get("id")
    return bool(user) and metadata(body).get("home") == user


def mark(view: dict, body: dict) -> dict:
    """The form `view`, remembering it was opened from the Home tab of the person clicking, so its
    submission refreshes their tab."""
    if (body.get("view") or {}).get("type") != "home":
        return view
    return with_metadata(view, home=(body.get("user") or {}).get("id", ""))


def refresh(svc: Services, client, body: dict) -> None:
    """Called at the end of a listener's after-ack half (vote.py, deploy.py): re-publish the actor's Home,
    from the record as the action left it, when they acted from it. Nothing for a click in a channel."""
    if not from_home(body):
        return
    try:
        home_of(svc).publish(client, body["user"]["id"], fresh=True)
    except Exception:  # noqa: BLE001 - the action was answered already; the next open redraws
        log.exception("App Home refresh failed")


def register(app: App, svc: Services) -> None:
    home = home_of(svc)

    def opened(event, client):
        # The event also comes for the Messages tab; only the Home tab is drawn.
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        try:
            home.publish(client, event["user"])
        except Exception:  # noqa: BLE001 - nobody asked in words, so there is nobody to answer; keep the log
            log.exception("App Home for %s failed", event.get("user"))

    app.event("app_home_opened")(ack=just_ack, lazy=[opened])

    def show_clicked(body, action, client):
        tell = answer_to(svc, client, body)  # from the tab: no channel, no response_url, so a DM

        def work():
            try:
                release_id = parse_ref(str(action.get("value") or ""))
            except InputError as exc:
                tell(f":warning: {esc(exc.message)}")
                return
            rec = show_release(svc.db, release_id)
            for blocks in record_messages(rec):
                tell(rec.release.ref, blocks)
        run(svc, tell, work)

    app.action(render.SHOW_ACTION)(ack=just_ack, lazy=[show_clicked])
