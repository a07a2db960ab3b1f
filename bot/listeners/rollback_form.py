"""The "Rolled back" button's form: when the rollback was decided and when the previous version was confirmed
stable (QMS 4.5), in the person's zone, prefilled by commands.rollback's rule; its submission records the end."""
from __future__ import annotations

import json
import logging
from typing import Callable

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from calendars.timeparse import TimeInputError, format_duration, zone
from commands.deploy import Deployer, finish_deployment
from commands.errors import FieldErrors, InputError
from commands.rollback import form_defaults, form_times
from commands.text import UNSTORABLE, parse_ref, unstorable_field

from bot.listeners.common import answer_to, carry_answer, run, user_profile
from bot.messages.common import esc
from bot.messages.rollback import ROLLBACK_FINISH_CALLBACK, rollback_modal
from bot.services import Services

log = logging.getLogger(__name__)


def open_form(svc: Services, client, body: dict, release_id: int, tell) -> bool:
    """Open the form; False when there is no rollback to finish (the plain finish then answers why)."""
    try:
        found = form_defaults(svc.db, release_id, svc.clock)
    except InputError as exc:
        tell(f":warning: {esc(exc.message)}")
        return True
    if found is None:
        return False
    release, decided, restored = found
    tz = user_profile(client, body["user"]["id"])[0] or release.tz
    try:
        zone(tz)
    except TimeInputError:
        tz = release.tz
    view = rollback_modal(release, (body.get("channel") or {}).get("id", ""), decided, restored, tz,
                          format_duration(svc.policy.deployment.rollback_slo))
    try:
        client.views_open(trigger_id=body["trigger_id"], view=carry_answer(view, body))
    except SlackApiError as exc:
        log.warning("views.open (rollback) failed: %s", exc.response.get("error"))
        tell(":warning: Slack would not open the form; please try again.")
    return True


def _values(view: dict) -> dict[str, str]:
    state = view["state"]["values"]
    return {f: (((state.get(f) or {}).get(f) or {}).get("value") or "").strip() for f in ("decided", "restored",
                                                                                           "note")}


def register(app: App, svc: Services, deployer: Callable[[Services, str], Deployer]) -> None:
    def read(view: dict):
        values = _values(view)
        meta = json.loads(view.get("private_metadata") or "{}")
        return values, meta, form_times(values["decided"], values["restored"], str(meta.get("tz") or "UTC"),
                                        svc.clock.now())

    def ack_form(ack, view):
        values = _values(view)
        bad = unstorable_field(values)
        if bad is not None:
            ack(response_action="errors", errors={bad: f"This {UNSTORABLE}."[:150]})
            return
        try:
            read(view)
        except FieldErrors as exc:  # wrong times stay in the form, next to the field
            ack(response_action="errors", errors={k: v[:150] for k, v in exc.errors.items()})
            return
        ack()

    def lazy(body, view, client):
        if unstorable_field(_values(view)) is not None:
            return  # answered in the ack
        try:
            values, meta, times = read(view)
        except FieldErrors:
            return  # answered in the ack
        user = body["user"]["id"]
        run(svc, answer_to(svc, client, body),
            lambda: finish_deployment(svc.db, deployer(svc, user), parse_ref(str(meta["release"])), "rolled_back",
                                      svc.clock, svc.policy, note=values["note"] or None, times=times))

    app.view(ROLLBACK_FINISH_CALLBACK)(ack=ack_form, lazy=[lazy])
