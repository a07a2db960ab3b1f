"""The request form: opened by /release request, derived type shown, errors inline, release created on submit."""
from __future__ import annotations

import json

from sqlmodel import Session, select

from storage.models import AuditEvent, Release


def values(**over):
    """A valid submission's state.values, as Slack sends it."""
    v = {
        "answers": {"answers": {"type": "checkboxes", "selected_options": [{"value": "feature"}]}},
        "type": {"type": {"type": "static_select", "selected_option": None}},
        "service": {"service": {"type": "plain_text_input", "value": "payments"}},
        "version": {"version": {"type": "plain_text_input", "value": "2.3.1"}},
        "env": {"env": {"type": "static_select", "selected_option": {"value": "production"}}},
        "start_date": {"start_date": {"type": "datepicker", "selected_date": "2026-12-01"}},
        "start_time": {"start_time": {"type": "timepicker", "selected_time": "14:00"}},
        "tz": {"tz": {"type": "plain_text_input", "value": "Europe/London"}},
        "duration": {"duration": {"type": "plain_text_input", "value": "60m"}},
        "summary": {"summary": {"type": "plain_text_input", "value": "Add refunds"}},
        "risk": {"risk": {"type": "plain_text_input", "value": None}},
        "rollback": {"rollback": {"type": "plain_text_input", "value": "redeploy 2.3.0"}},
        "links": {"links": {"type": "plain_text_input", "value": None}},
    }
    for key, val in over.items():
        v[key] = val
    return v


def answers(*keys):
    return {"answers": {"type": "checkboxes", "selected_options": [{"value": k} for k in keys]}}


def chosen_type(t):
    return {"type": {"type": "static_select", "selected_option": {"value": t}}}


META = json.dumps({"channel": "C0DEV"})


def rows(db, model):
    with Session(db) as s:
        return list(s.exec(select(model)))


def test_request_without_fields_opens_modal_with_the_questions(bot, db):
    bot.command("request", user="U0DEV")
    [opened] = bot.emulator.calls_to("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == "release_request"
    questions = next(b for b in view["blocks"] if b["block_id"] == "answers")["element"]["options"]
    asked = " ".join(o["text"]["text"] for o in questions)
    for words in ("Breaking API", "Cross-system", "CVE", "incident", "Infrastructure", "IAM", "auth, crypto"):
        assert words in asked
    assert "Derived release type: *patch*" in json.dumps(view)
    tz = next(b for b in view["blocks"] if b.get("block_id") == "tz")["element"]["initial_value"]
    assert tz == "Europe/London"  # the requester's own zone, from users.info
    assert rows(db, Release) == []


def test_partial_line_opens_modal_prefilled(bot, db):
    bot.command('request service=payments version=9.9.9 summary="Half typed" flags=cve', user="U0DEV")
    view = bot.emulator.calls_to("views.open")[0].args["view"]
    initial = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"}
    assert initial["service"] == "payments" and initial["version"] == "9.9.9" and initial["summary"] == "Half typed"
    assert "Derived release type: *security*" in json.dumps(view)
    assert rows(db, Release) == []


COMPLETE = ('request service=payments version=2.3.1 type=patch start="2026-12-01 14:00" tz=Europe/London '
            'duration=60m summary="Fix rounding"')


def test_a_complete_line_without_flags_opens_the_form_to_ask_the_questions(bot, db):
    bot.command(COMPLETE, user="U0DEV")
    [opened] = bot.emulator.calls_to("views.open")
    view = opened.args["view"]
    initial = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"}
    assert initial["service"] == "payments" and initial["summary"] == "Fix rounding"
    chosen = next(b for b in view["blocks"] if b.get("block_id") == "type")["element"]["initial_option"]["value"]
    assert chosen == "patch"
    assert rows(db, Release) == [] and rows(db, AuditEvent) == []


def test_flags_none_is_the_requesters_answer_that_every_question_is_no(bot, db):
    bot.command(COMPLETE + " flags=none", user="U0DEV")
    assert bot.emulator.calls_to("views.open") == []
    [rel] = rows(db, Release)
    assert rel.classification_answered and not any(rel.answers.values())
    assert (rel.derived_type, rel.effective_type, rel.misclassified) == ("patch", "patch", False)
    [ev] = rows(db, AuditEvent)
    assert (ev.action, ev.actor, ev.after["answered_by"]) == ("requested", "U0DEV", "U0DEV")


def test_an_emergency_without_an_incident_is_refused_with_the_reason(bot, db):
    bot.command(COMPLETE.replace("type=patch", "type=emergency") + " flags=cve", user="U0DEV")
    said = bot.emulator.calls_to("response_url")[-1].args["text"]
    assert "QMS 4.6" in said and "incident" in said
    assert rows(db, Release) == []


def test_ticking_answers_redraws_derived_type(bot):
    bot.command("request", user="U0DEV")
    view = bot.emulator.calls_to("views.open")[0].response["view"]
    bot.slack.view_block_action("answers", view, values(answers=answers("breaking")), user="U0DEV")
    bot.idle()
    [update] = bot.emulator.calls_to("views.update")
    assert update.args["view_id"] == view["id"]
    assert "Derived release type: *major*" in json.dumps(update.args["view"])


def test_submit_creates_release_and_tells_requester(bot, db):
    r = bot.submit("release_request", values(), user="U0DEV", private_metadata=META)
    assert r.status_code == 200 and r.text in ("", "null")
    [rel] = rows(db, Release)
    assert (rel.service, rel.derived_type, rel.effective_type, rel.tz) == ("payments", "minor", "minor", "Europe/London")
    assert rel.answers["feature"] is True and rel.rollback_plan == "redeploy 2.3.0"
    [eph] = bot.emulator.calls_to("chat.postEphemeral")
    assert eph.args["channel"] == "C0DEV" and "REL-1" in eph.args["text"]
    assert len(bot.emulator.calls_to("chat.postMessage")) == 1


def test_bad_fields_come_back_inline_and_nothing_is_written(bot, db):
    bad = values(tz={"tz": {"value": "Mars/Olympus"}}, duration={"duration": {"value": "soon"}},
                 start_date={"start_date": {"selected_date": "2026-03-29"}},
                 service={"service": {"value": "pay ments!"}})
    r = bot.submit("release_request", bad, user="U0DEV", private_metadata=META)
    body = r.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"tz", "duration", "service"}
    assert "IANA" in body["errors"]["tz"]
    assert rows(db, Release) == [] and rows(db, AuditEvent) == []
    assert bot.emulator.calls_to("chat.postMessage") == []


def test_emergency_chosen_in_the_form_without_an_incident_is_an_inline_error(bot, db):
    r = bot.submit("release_request", values(answers=answers("cve"), type=chosen_type("emergency")), user="U0DEV",
                   private_metadata=META)
    body = r.json()
    assert body["response_action"] == "errors" and "QMS 4.6" in body["errors"]["type"]
    assert rows(db, Release) == [] and rows(db, AuditEvent) == []


def test_past_or_nonexistent_start_is_an_inline_error(bot, db):
    r = bot.submit("release_request", values(start_date={"start_date": {"selected_date": "2027-03-28"}},
                                             start_time={"start_time": {"selected_time": "01:30"}}),
                   user="U0DEV", private_metadata=META)
    assert "does not exist" in r.json()["errors"]["start_date"]
    r = bot.submit("release_request", values(start_date={"start_date": {"selected_date": "2026-01-01"}}),
                   user="U0DEV", private_metadata=META)
    assert "in the past" in r.json()["errors"]["start_date"]
    assert rows(db, Release) == []


def test_a_chosen_type_adds_its_controls_and_one_that_drops_derived_controls_is_a_misclassification(bot, db):
    bot.submit("release_request", values(answers=answers("feature"), type=chosen_type("major")), user="U0DEV",
               private_metadata=META)
    bot.submit("release_request", values(answers=answers("breaking"), type=chosen_type("patch")), user="U0DEV",
               private_metadata=META)
    stricter, weaker = rows(db, Release)
    # major's approvers lack minor's QA lead: it stays, and the choice is recorded as a misclassification
    assert stricter.misclassified and stricter.required_roles == {"cab": 2, "release_manager": 1, "security": 1,
                                                                  "qa_lead": 1}
    assert (weaker.requested_type, weaker.derived_type, weaker.effective_type) == ("patch", "major", "major")
    assert weaker.misclassified and weaker.required_roles == {"cab": 2, "release_manager": 1, "security": 1,
                                                              "engineering_lead": 1, "qa_lead": 1}
    with Session(db) as s:
        acts = [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.release_id == weaker.id)
                                        .order_by(AuditEvent.id))]
    # major needs 14 days' lead time; this window is 8 days out, so planning flags it too
    assert acts == ["requested", "misclassified", "planning_checked"]
    said = bot.emulator.calls_to("chat.postEphemeral")[-1].args["text"]
    assert "misclassification" in said


def test_double_submit_creates_one_release(bot, db):
    bot.submit("release_request", values(), user="U0DEV", private_metadata=META, view_id="V0SAME")
    bot.submit("release_request", values(), user="U0DEV", private_metadata=META, view_id="V0SAME")
    assert len(rows(db, Release)) == 1
    assert len(bot.emulator.calls_to("chat.postMessage")) == 1


def test_the_forms_incident_answer_opens_the_emergency_window_now(bot, db, clock):
    # The pickers cannot be left empty in Slack's form; whatever they hold, an emergency opens now (QMS 4.6).
    r = bot.submit("release_request", values(answers=answers("incident"),
                                             incident={"incident": {"type": "plain_text_input", "value": "INC-77"}},
                                             start_date={"start_date": {"selected_date": "2026-11-20"}}),
                   user="U0DEV", private_metadata=META)
    assert r.status_code == 200 and r.text in ("", "null")
    [rel] = rows(db, Release)
    assert rel.effective_type == "emergency"
    start, end = (t.replace(tzinfo=None) for t in (rel.start_at, rel.end_at))
    assert start == clock.now().replace(tzinfo=None) and end - start == bot.svc.policy.emergency.window
    [eph] = bot.emulator.calls_to("chat.postEphemeral")
    assert "REL-1" in eph.args["text"]
    bot.deliver()  # and its bridge opens like /release emergency's
    assert bot.emulator.calls_to("conversations.create")[0].args["name"] == "rel-1-payments-emergency"
