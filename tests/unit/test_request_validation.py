"""request.validate: every wrong field at once, so a modal can show them all."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.times import iso_times
from commands.classification import Answers
from commands.errors import FieldErrors, InputError
from commands.policy import Policy
from commands.request import REQUIRED, missing_fields, parse_flags, validate
from conftest import START

RAW = {"service": "payments", "version": "2.3.1", "type": "minor", "start": "2026-12-01 14:00",
       "tz": "Europe/London", "duration": "60m", "summary": "Add refunds"}


@pytest.fixture
def p() -> Policy:
    return Policy.default()


FEATURE = Answers(feature=True)  # the answers that derive RAW's type


def errors_of(raw, p, now=START, answers=FEATURE) -> dict[str, str]:
    with pytest.raises(FieldErrors) as info:
        validate(raw, answers, p, now)
    err = info.value
    assert isinstance(err, InputError)
    # The first error is also the InputError's own field and message.
    first = next(iter(err.errors))
    assert err.field == first and err.message == f"{first}: {err.errors[first]}"
    return err.errors


def test_a_good_request(p):
    d = validate(RAW, FEATURE, p, START)
    assert (d.service, d.version, d.requested_type, d.environment) == ("payments", "2.3.1", "minor", "production")
    assert d.start_at == datetime(2026, 12, 1, 14, 0, tzinfo=timezone.utc)
    assert d.duration == timedelta(hours=1)
    assert d.end_at == datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
    assert d.tz == "Europe/London" and d.summary == "Add refunds"
    assert d.risk is None and d.rollback is None and d.links is None and d.answers is FEATURE


def test_values_are_trimmed_type_lowercased_and_optional_fields_kept(p):
    answers = Answers(feature=True)
    d = validate({**RAW, "service": "  payments ", "type": " MINOR ", "summary": "  Add refunds\n",
                  "risk": " low ", "rollback": "redeploy 2.3.0", "links": "https://x.test", "env": "staging"},
                 answers, p, START)
    assert d.service == "payments" and d.requested_type == "minor" and d.summary == "Add refunds"
    assert (d.risk, d.rollback, d.links, d.environment) == ("low", "redeploy 2.3.0", "https://x.test", "staging")
    assert d.answers is answers


def test_blank_optional_fields_become_none(p):
    d = validate({**RAW, "risk": "   ", "rollback": "", "links": None}, FEATURE, p, START)
    assert (d.risk, d.rollback, d.links) == (None, None, None)


def test_every_missing_field_is_reported_at_once(p):
    errors = errors_of({}, p)
    assert set(errors) == set(REQUIRED)
    assert all(msg == "is required" for msg in errors.values())


def test_blank_is_missing(p):
    errors = errors_of({**RAW, "summary": "   ", "version": None}, p)
    assert errors == {"version": "is required", "summary": "is required"}


def test_missing_fields_helper():
    assert missing_fields({**RAW, "flags": "none"}) == []
    assert missing_fields({**RAW, "flags": "feature", "tz": " ", "summary": None}) == ["tz", "summary"]


def test_a_one_line_request_without_flags_is_missing_its_answers():
    # A one-line request must answer the classification questions (flags=… or flags=none);
    # without them the form opens, as for any other missing field.
    assert missing_fields(RAW) == ["flags"]
    assert missing_fields({**RAW, "flags": " "}) == ["flags"]


def test_a_request_without_answers_is_refused(p):
    errors = errors_of(RAW, p, answers=None)
    assert set(errors) == {"flags"}
    assert "flags=none" in errors["flags"]


@pytest.mark.parametrize("answers", [Answers(), Answers(cve=True), Answers(feature=True, breaking=True)])
def test_emergency_without_an_incident_is_refused(p, answers):
    errors = errors_of({**RAW, "type": "emergency"}, p, answers=answers)
    assert set(errors) == {"type"}
    assert "QMS 4.6" in errors["type"] and "incident" in errors["type"]


def test_emergency_for_an_incident_is_accepted(p):
    assert validate({**RAW, "type": "emergency", "incident": "INC-1"}, Answers(incident=True), p,
                    START).requested_type == "emergency"


def test_many_wrong_fields_at_once(p):
    errors = errors_of({"service": "pay ments", "version": "2.3 .1", "type": "hotfix", "start": "someday",
                        "tz": "Europe/London", "duration": "soon", "summary": "x" * 2001, "env": "moon",
                        "risk": "r" * 2001}, p)
    assert set(errors) == {"service", "version", "type", "start", "duration", "summary", "env", "risk"}
    assert "payments-api" in errors["service"]
    assert "no spaces" in errors["version"]
    assert "'hotfix' is not a release type" in errors["type"]
    assert "YYYY-MM-DD HH:MM" in errors["start"] and "tomorrow 14:00" in errors["start"]
    assert "'soon' is not a duration like 45m" in errors["duration"]
    assert errors["summary"] == "is too long (2001 characters; at most 2000)"
    assert errors["risk"] == "is too long (2001 characters; at most 2000)"
    assert "'moon' is not an environment" in errors["env"] and "staging" in errors["env"]


@pytest.mark.parametrize("service", ["-payments", "pay/ments", "pay ments", "päyments", "a" * 81, ".x"])
def test_bad_service_names(p, service):
    assert "service" in errors_of({**RAW, "service": service}, p)


@pytest.mark.parametrize("service", ["payments", "payments-api", "pay.v2_x", "a" * 80, "9lives"])
def test_good_service_names(p, service):
    assert validate({**RAW, "service": service}, FEATURE, p, START).service == service


@pytest.mark.parametrize("field, limit", [("version", 200), ("summary", 2000), ("risk", 2000),
                                          ("rollback", 2000), ("links", 2000)])
def test_text_limits(p, field, limit):
    assert getattr(validate({**RAW, field: "v" * limit}, FEATURE, p, START), field) == "v" * limit
    errors = errors_of({**RAW, field: "v" * (limit + 1)}, p)
    assert errors == {field: f"is too long ({limit + 1} characters; at most {limit})"}


@pytest.mark.parametrize("tz", ["Mars/Olympus", "London", "GMT+1 ", "utc"])
def test_bad_time_zone(p, tz):
    errors = errors_of({**RAW, "tz": tz}, p)
    assert set(errors) == {"tz"}  # the start cannot be judged without a zone, so it is not blamed
    assert "IANA" in errors["tz"]


def test_time_zone_that_is_a_folder_is_a_field_error(p):
    # "Europe" is a plausible slip for "Europe/London"; it must come back as a tz error, not a crash.
    errors = errors_of({**RAW, "tz": "Europe"}, p)
    assert set(errors) == {"tz"}


def test_nonexistent_dst_local_time(p):
    now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    errors = errors_of({**RAW, "start": "2026-03-29 01:30"}, p, now=now)
    assert set(errors) == {"start"}
    assert "does not exist in Europe/London" in errors["start"]


def test_same_local_time_in_another_zone_is_fine(p):
    now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    d = validate({**RAW, "start": "2026-03-29 01:30", "tz": "America/New_York"}, FEATURE, p, now)
    assert d.start_at == datetime(2026, 3, 29, 5, 30, tzinfo=timezone.utc)


def test_ambiguous_local_time_takes_the_first_occurrence(p):
    now = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)
    d = validate({**RAW, "start": "2026-10-25 01:30"}, FEATURE, p, now)
    assert d.start_at == datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)


def test_past_start(p):
    # START is 2026-11-23 09:00 UTC; London is on GMT then.
    errors = errors_of({**RAW, "start": "2026-11-23 08:54"}, p)
    assert set(errors) == {"start"}
    assert ("2026-11-23 08:54, read as 2026-11-23T08:54:00Z (2026-11-23 08:54 Europe/London), is in the past"
            in iso_times(errors["start"]))


def test_a_start_within_five_minutes_ago_is_someone_typing_now(p):
    d = validate({**RAW, "start": "2026-11-23 08:55"}, FEATURE, p, START)
    assert d.start_at == START - timedelta(minutes=5)


def test_past_is_judged_in_the_given_zone(p):
    # At 09:00 UTC, 08:30 in New York (13:30 UTC) is still ahead; 08:30 in Tokyo (23:30 UTC the day before) is past.
    d = validate({**RAW, "start": "2026-11-23 08:30", "tz": "America/New_York"}, FEATURE, p, START)
    assert d.start_at == datetime(2026, 11, 23, 13, 30, tzinfo=timezone.utc)
    errors = errors_of({**RAW, "start": "2026-11-23 08:30", "tz": "Asia/Tokyo"}, p)
    assert set(errors) == {"start"}


@pytest.mark.parametrize("duration", ["0", "0m", "soon", "1.5h", "-30m", "15d", "3w"])
def test_bad_duration(p, duration):
    errors = errors_of({**RAW, "duration": duration}, p)
    assert set(errors) == {"duration"}


def test_longest_window_is_fourteen_days(p):
    assert validate({**RAW, "duration": "14d"}, FEATURE, p, START).duration == timedelta(days=14)
    errors = errors_of({**RAW, "duration": "14d1m"}, p)
    assert "split the release" in errors["duration"]


@pytest.mark.parametrize("duration", ["99999999999999d", "²"])
def test_absurd_duration_is_a_field_error_not_a_crash(p, duration):
    errors = errors_of({**RAW, "duration": duration}, p)
    assert set(errors) == {"duration"}


def test_start_at_the_edge_of_the_calendar_is_a_field_error_not_a_crash(p):
    errors = errors_of({**RAW, "start": "9999-12-31 23:30", "tz": "America/New_York"}, p)
    assert set(errors) == {"start"}


def test_bare_number_duration_is_minutes(p):
    assert validate({**RAW, "duration": "90"}, FEATURE, p, START).duration == timedelta(minutes=90)


def test_environment_must_be_in_the_policy():
    p = Policy.from_mapping({"release": {"environments": ["prod", "stage"], "default_environment": "prod"}},
                            source="t")
    assert validate(RAW, FEATURE, p, START).environment == "prod"
    assert validate({**RAW, "env": "stage"}, FEATURE, p, START).environment == "stage"
    errors = errors_of({**RAW, "env": "production"}, p)
    assert errors == {"env": "'production' is not an environment; environments are prod, stage"}


@pytest.mark.parametrize("rtype", ["major", "minor", "patch", "security", "emergency", "infrastructure"])
def test_every_release_type_is_accepted(p, rtype):
    assert validate({**RAW, "type": rtype, "incident": "INC-1"}, Answers(incident=True), p,
                    START).requested_type == rtype


# --- flags on a one-line request ----------------------------------------------------------------------------------

def test_parse_flags():
    a = parse_flags(" Feature, sensitive ,network-iam,,iac, cross-system")
    assert a == Answers(feature=True, sensitive=True, network_iam=True, infrastructure=True, cross_system=True)


def test_flags_none_answers_every_question_no():
    assert parse_flags("none") == Answers() and parse_flags(" NONE ") == Answers()


@pytest.mark.parametrize("text", ["", " ", ",", "none,feature"])
def test_empty_or_contradictory_flags_are_refused(text):
    with pytest.raises(FieldErrors) as info:
        parse_flags(text)
    assert set(info.value.errors) == {"flags"} and "flags=none" in info.value.errors["flags"]


def test_unknown_flag():
    with pytest.raises(FieldErrors) as info:
        parse_flags("feature,network_iam")
    assert set(info.value.errors) == {"flags"}
    assert "'network_iam' is not a classification flag" in info.value.errors["flags"]
    assert "network-iam" in info.value.errors["flags"]
