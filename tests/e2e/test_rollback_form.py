"""Through Slack: the "Rolled back" button asks when the rollback was decided and when the previous version was
confirmed stable (QMS 4.5), prefilled by the rule, in the person's zone (the emulator's users are in
Europe/London: UTC in December); over the 15-minute SLO is one non-conformance. And `/release misclassified`."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from storage.models import NonConformance

from test_deployment import IN_WINDOW, approved, click_in_thread, deployment, release, start


def ncs(db) -> list[NonConformance]:
    """The non-conformances beyond the start's own: each test starts by hand from Slack in production, which is
    recorded as exactly one manual_deployment non-conformance (QMS 4.4 step 4, 6.2)."""
    with Session(db) as s:
        every = list(s.exec(select(NonConformance).order_by(NonConformance.id)))
    assert [n.kind for n in every if n.kind == "manual_deployment"] == ["manual_deployment"]
    return [n for n in every if n.kind != "manual_deployment"]


def opened_form(bot, user="U0PL") -> dict:
    click_in_thread(bot, "deploy_outcome", "1:rolled_back", user)
    view = bot.emulator.calls_to("views.open")[-1].args["view"]
    assert view["callback_id"] == "rollback_finish_form"
    return view


def initial(view, block_id) -> str:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]["initial_value"]


def values(decided: str, restored: str, note: str = "") -> dict:
    return {"decided": {"decided": {"value": decided}}, "restored": {"restored": {"value": restored}},
            "note": {"note": {"value": note}}}


def test_the_form_defaults_to_the_earlier_decision_and_now_and_records_both(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    clock.set(IN_WINDOW + timedelta(minutes=5))  # 10:10
    bot.command('rollback REL-1 reason="error rate +12%"', user="U0PL")
    clock.set(IN_WINDOW + timedelta(minutes=30))  # 10:35
    view = opened_form(bot)
    assert (initial(view, "decided"), initial(view, "restored")) == ("2026-12-15 10:10", "2026-12-15 10:35")
    assert "Europe/London" in str(view["blocks"])
    # the person knows better: service was stable at 10:22
    r = bot.submit("rollback_finish_form", values("2026-12-15 10:10", "2026-12-15 10:22", "stable on 2.3.0"),
                   user="U0PL", private_metadata=view["private_metadata"])
    assert r.status_code == 200
    dep = deployment(db)
    assert (dep.rollback_decided_at, dep.restored_at) == (IN_WINDOW + timedelta(minutes=5),
                                                          IN_WINDOW + timedelta(minutes=17))
    assert release(db).state == "rolled_back" and dep.note == "stable on 2.3.0"
    assert ncs(db) == []  # 12 minutes


def test_a_rollback_over_15_minutes_from_the_form_is_one_non_conformance(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    clock.set(IN_WINDOW + timedelta(minutes=40))
    view = opened_form(bot)
    assert initial(view, "decided") == initial(view, "restored") == "2026-12-15 10:45"  # no earlier decision
    form = values("2026-12-15 10:10", "2026-12-15 10:30")
    for _ in range(2):  # a double submit
        bot.submit("rollback_finish_form", form, user="U0PL", private_metadata=view["private_metadata"])
    [nc] = ncs(db)
    assert nc.kind == "rollback_slo_exceeded" and "took 20m" in nc.detail
    posts = [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage")
             if "Non-conformance" in c.args["text"] and nc.ref in c.args["text"]]
    assert len(posts) == 2  # once in the thread, once in the release channel


def test_times_that_cannot_be_true_stay_in_the_form(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    clock.set(IN_WINDOW + timedelta(minutes=20))
    view = opened_form(bot)
    for form, field, text in ((values("2026-12-15 10:20", "2026-12-15 10:10"), "restored", "not before"),
                              (values("2026-12-15 10:10", "2026-12-15 12:00"), "restored", "future"),
                              (values("ten past", "2026-12-15 10:20"), "decided", "not a date and time")):
        r = bot.submit("rollback_finish_form", form, user="U0PL", private_metadata=view["private_metadata"])
        assert r.json()["response_action"] == "errors" and text in r.json()["errors"][field]
    assert release(db).state == "deploying" and deployment(db).restored_at is None


def test_success_and_failed_buttons_still_record_at_once(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    opened = len(bot.emulator.calls_to("views.open"))
    click_in_thread(bot, "deploy_outcome", "1:failed", "U0PL")
    assert len(bot.emulator.calls_to("views.open")) == opened and release(db).state == "failed"


def test_misclassified_found_after_deployment_is_a_nonconformance(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    click_in_thread(bot, "deploy_outcome", "1:success", "U0PL")
    bot.command('misclassified REL-1 reason="<!channel> was major: the public API changed"', user="U0QA")
    assert "Only a release manager" in bot.emulator.calls_to("response_url")[-1].args["text"]
    bot.command('misclassified REL-1 reason="<!channel> was major: the public API changed"', user="U0RM")
    bot.command('misclassified REL-1 reason="again"', user="U0RM")
    [nc] = ncs(db)
    assert nc.kind == "misclassification" and nc.reported_by == "U0RM"
    assert "already recorded" in bot.emulator.calls_to("response_url")[-1].args["text"]
    bot.deliver()
    posted = [c.args["text"] for c in bot.emulator.calls_to("chat.postMessage") if "Non-conformance" in c.args["text"]]
    assert posted and all("<!channel>" not in t for t in posted)  # echoed text is escaped


def test_done_rolled_back_takes_the_times_typed_in_the_person_zone(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    clock.set(IN_WINDOW + timedelta(minutes=5))  # 10:10
    bot.command('rollback REL-1 reason="p95 over SLO"', user="U0PL")
    clock.set(IN_WINDOW + timedelta(minutes=35))  # 10:40
    bot.command('done REL-1 outcome=rolled_back restored="2026-12-15 10:09"', user="U0PL")
    assert "before the rollback was decided" in bot.emulator.calls_to("response_url")[-1].args["text"]
    assert release(db).state == "rolling_back" and ncs(db) == []
    bot.command('done REL-1 outcome=rolled_back restored="2026-12-15 10:30"', user="U0PL")
    dep = deployment(db)
    assert (dep.rollback_decided_at, dep.restored_at) == (IN_WINDOW + timedelta(minutes=5),
                                                          IN_WINDOW + timedelta(minutes=25))
    [nc] = ncs(db)
    assert nc.kind == "rollback_slo_exceeded" and "took 20m" in nc.detail


def test_times_with_another_outcome_are_bad_input(bot, db, clock):
    approved(bot, db)
    start(bot, clock)
    bot.command('done REL-1 outcome=success restored="2026-12-15 10:09"', user="U0PL")
    assert "go with outcome=rolled_back" in bot.emulator.calls_to("response_url")[-1].args["text"]
    assert release(db).state == "deploying"
