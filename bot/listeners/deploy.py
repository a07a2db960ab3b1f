"""Deployment: the checklist form, outcome buttons, sign-off buttons, follow-up and retrospective forms."""
from __future__ import annotations

import json
import logging

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from commands.aftercare import record_task, sign_off, validate
from commands.deploy import CHECKLIST, Deployer, finish_deployment, precheck_deployment, start_deployment
from commands.errors import InputError
from commands.record import show_release
from commands.text import UNSTORABLE, parse_ref, unstorable_field

from bot.listeners import rollback_form
from bot.listeners.common import answer_to, carry_answer, just_ack, run
from bot.listeners.home import mark, refresh
from bot.messages import aftercare as msg
from bot.messages.common import esc
from bot.services import Services

log = logging.getLogger(__name__)


def deployer(svc: Services, user_id: str) -> Deployer:
    # with the roles Slack could not resolve, so a failed group lookup is "try again", not a refusal
    return Deployer.of(svc.actor(user_id))


def open_form(svc: Services, client, trigger_id: str, release_id: int, channel: str, tell, kind: str,
              user: str | None = None, body: dict | None = None) -> None:
    """Open the checklist, follow-up or retrospective form for a release; its submission is answered where
    `body` (the command or click opening it) would be.

    The checklist opens only when ticking it could let the deployment start: a gate that already
    fails for another reason (not approved, outside the window, a blackout, the wrong role) is
    answered, and audited, before anyone fills in a form for nothing."""
    if kind == "deploy" and user is not None:
        checked: dict = {}

        def precheck():
            checked["stop"] = precheck_deployment(svc.db, deployer(svc, user), release_id, svc.clock, svc.policy)
            checked["done"] = True
            return checked["stop"]

        run(svc, tell, precheck, form_of="deploy")  # says the refusal, or "could not check", or nothing
        if not checked.get("done") or checked["stop"] is not None:
            return
    try:
        release = show_release(svc.db, release_id).release
    except InputError as exc:
        tell(f":warning: {esc(exc.message)}")
        return
    view = msg.checklist_modal(release, channel) if kind == "deploy" else msg.task_modal(kind, release, channel)
    try:
        client.views_open(trigger_id=trigger_id, view=mark(carry_answer(view, body or {}), body or {}))
    except SlackApiError as exc:
        log.warning("views.open (%s) failed: %s", kind, exc.response.get("error"))
        tell(":warning: Slack would not open the form; please try again.")


def register(app: App, svc: Services) -> None:
    def from_button(kind: str):
        def lazy(body, action, client):
            tell = answer_to(svc, client, body)
            try:
                release_id = parse_ref(str(action["value"]).split(":")[0])  # bounded, like a typed id
            except InputError as exc:
                tell(f":warning: {esc(exc.message)}")
                return
            channel = (body.get("channel") or {}).get("id", "")  # none on the App Home tab
            open_form(svc, client, body["trigger_id"], release_id, channel, tell, kind,
                      body["user"]["id"], body=body)
        return lazy

    app.action(msg.START_DEPLOY)(ack=just_ack, lazy=[from_button("deploy")])
    app.action(msg.FOLLOWUP_ACTION)(ack=just_ack, lazy=[from_button("followup")])
    app.action(msg.RETRO_ACTION)(ack=just_ack, lazy=[from_button("retrospective")])
    app.action(msg.VALIDATE_ACTION)(ack=just_ack, lazy=[from_button("validate")])

    def checklist_submitted(body, view, client):
        meta = json.loads(view.get("private_metadata") or "{}")
        ticked = {o["value"] for o in ((view["state"]["values"].get("checklist") or {}).get("checklist") or {})
                  .get("selected_options") or []}
        user = body["user"]["id"]
        prov = _values(view, msg.PROVENANCE_FIELDS)
        run(svc, answer_to(svc, client, body),
            lambda: start_deployment(svc.db, deployer(svc, user), parse_ref(str(meta["release"])),
                                     {key: key in ticked for key, _ in CHECKLIST}, svc.clock, svc.policy, **prov),
            form_of="deploy")
        refresh(svc, client, body)  # the checklist was opened from the App Home tab (mark): draw it again

    # The gate's answer (every failed condition) goes to the deployer as a
    # message they can read in full, so the form closes on submit.
    app.view(msg.CHECKLIST_CALLBACK)(ack=just_ack, lazy=[checklist_submitted])

    def outcome_clicked(body, action, client):
        release_id, outcome = action["value"].split(":", 1)
        user = body["user"]["id"]
        tell = answer_to(svc, client, body)
        if outcome == "rolled_back" and rollback_form.open_form(svc, client, body, parse_ref(release_id), tell):
            return  # the form asks when it was decided and restored; its submission records it
        run(svc, tell,
            lambda: finish_deployment(svc.db, deployer(svc, user), parse_ref(release_id), outcome, svc.clock,
                                      svc.policy))

    app.action(msg.OUTCOME_ACTION)(ack=just_ack, lazy=[outcome_clicked])
    rollback_form.register(app, svc, deployer)

    def signoff_clicked(body, action, client):
        release_id, role = action["value"].split(":", 1)
        user = body["user"]["id"]
        run(svc, answer_to(svc, client, body),
            lambda: sign_off(svc.db, svc.actor(user), parse_ref(release_id), svc.clock, svc.policy, role_hint=role))

    app.action(msg.SIGNOFF_ACTION)(ack=just_ack, lazy=[signoff_clicked])

    def task_form(kind: str, fields: tuple[str, ...], work=None):
        def ack_form(ack, view):
            values = _values(view, fields)
            if not values[fields[0]]:
                ack(response_action="errors", errors={fields[0]: "This is required."})
                return
            bad = unstorable_field(values)
            if bad is not None:
                ack(response_action="errors", errors={bad: f"This {UNSTORABLE}."[:150]})
                return
            ack()

        def lazy(body, view, client):
            values = _values(view, fields)
            if not values[fields[0]] or unstorable_field(values) is not None:  # answered in the ack
                return
            meta = json.loads(view.get("private_metadata") or "{}")
            user = body["user"]["id"]
            do = work or (lambda actor, rid, v: record_task(svc.db, actor, rid, kind, v, svc.clock, svc.policy))
            run(svc, answer_to(svc, client, body),
                lambda: do(svc.actor(user), parse_ref(str(meta["release"])), values))
        return ack_form, lazy

    ack_f, lazy_f = task_form("followup", ("evidence", "actions"))
    app.view(msg.FOLLOWUP_CALLBACK)(ack=ack_f, lazy=[lazy_f])
    ack_r, lazy_r = task_form("retrospective", ("notes", "actions"))
    app.view(msg.RETRO_CALLBACK)(ack=ack_r, lazy=[lazy_r])
    ack_v, lazy_v = task_form("validate", ("note",), work=lambda actor, rid, v: validate(
        svc.db, actor, rid, v["note"], svc.clock, svc.policy))
    app.view(msg.VALIDATE_CALLBACK)(ack=ack_v, lazy=[lazy_v])


def _values(view: dict, fields: tuple[str, ...]) -> dict[str, str]:
    state = view["state"]["values"]
    return {f: (((state.get(f) or {}).get(f) or {}).get("value") or "").strip() for f in fields}
