"""The periods metrics are asked for, the one before each, when the QMS 6.1 reviews fall due, and the
messages that show them (Slack's limits, escaped text)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.messages.metrics import metrics_message, review_text
from commands.errors import InputError
from commands.metrics import Figure, MetricsReport, Week
from commands.metrics_period import monthly_due, parse_period, parse_range, weekly_due
from commands.policy import Policy

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # a Tuesday
MP = Policy.default().metrics


@pytest.mark.parametrize("text, label, start, end", [
    ("2026-11", "2026-11", datetime(2026, 11, 1), datetime(2026, 12, 1)),
    ("last-week", "2026-W48", datetime(2026, 11, 23), datetime(2026, 11, 30)),
    ("this-week", "2026-W49", datetime(2026, 11, 30), datetime(2026, 12, 7)),
    ("2026-w01", "2026-W01", datetime(2025, 12, 29), datetime(2026, 1, 5)),
    ("last-month", "2026-11", datetime(2026, 11, 1), datetime(2026, 12, 1)),
    ("2026-Q4", "2026-Q4", datetime(2026, 10, 1), datetime(2027, 1, 1)),
    ("30d", "30d", datetime(2026, 11, 2), datetime(2026, 12, 2)),
])
def test_periods_people_type(text, label, start, end):
    p = parse_period(text, NOW, MP)
    assert (p.label, p.start, p.end) == (label, start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


@pytest.mark.parametrize("text", ["2026-13", "2026-W54", "0d", "400d", "yesterday", "2026-Q5"])
def test_a_bad_period_names_the_forms(text):
    with pytest.raises(InputError, match="is not a period; use a period like last-week"):
        parse_period(text, NOW, MP)


def test_the_period_before_each_kind():
    assert parse_period("2026-01", NOW, MP).previous("UTC").label == "2025-12"
    assert parse_period("2026-W01", NOW, MP).previous("UTC").label == "2025-W52"
    assert parse_period("2026-Q1", NOW, MP).previous("UTC").label == "2025-Q4"
    days = parse_period("30d", NOW, MP)
    before = days.previous("UTC")
    assert (before.end, before.end - before.start) == (days.start, timedelta(days=30))


def test_periods_are_days_of_the_review_zone():
    london = Policy.from_mapping({"metrics": {"review_tz": "America/New_York"}}).metrics
    p = parse_period("2026-11", NOW, london)
    assert p.start == datetime(2026, 11, 1, 4, tzinfo=UTC) and p.end == datetime(2026, 12, 1, 5, tzinfo=UTC)
    r = parse_range("2026-11-01", "2026-11-30", NOW, MP)
    assert (r.start, r.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(InputError, match="--to is before --from"):
        parse_range("2026-11-30", "2026-11-01", NOW, MP)


def test_the_weekly_review_falls_due_on_its_day_and_time_about_the_week_before():
    period, due = weekly_due(datetime(2026, 11, 30, 9, 0, tzinfo=UTC), MP)
    assert (period.label, due) == ("2026-W48", datetime(2026, 11, 30, 9, tzinfo=UTC))
    period, due = weekly_due(datetime(2026, 11, 30, 8, 59, tzinfo=UTC), MP)
    assert (period.label, due) == ("2026-W47", datetime(2026, 11, 23, 9, tzinfo=UTC))
    friday = Policy.from_mapping({"metrics": {"review_day": "Fri", "review_time": "16:00"}}).metrics
    period, due = weekly_due(datetime(2026, 12, 5, 12, tzinfo=UTC), friday)
    assert (period.label, due) == ("2026-W48", datetime(2026, 12, 4, 16, tzinfo=UTC))


def test_the_monthly_report_falls_due_on_the_first_working_day():
    period, due = monthly_due(datetime(2026, 8, 3, 9, 30, tzinfo=UTC), MP)  # 1 August 2026 is a Saturday
    assert (period.label, due) == ("2026-07", datetime(2026, 8, 3, 9, tzinfo=UTC))
    period, due = monthly_due(datetime(2026, 8, 1, 12, tzinfo=UTC), MP)
    assert (period.label, due) == ("2026-06", datetime(2026, 7, 1, 9, tzinfo=UTC))


def _report(n_figures: int = 14, label: str = "Figure") -> MetricsReport:
    figs = tuple(Figure(f"k{i}", f"{label} {i}", 12.5, 40, "%", "< 10%", False, True, "12.5% (5 of 40)")
                 for i in range(n_figures))
    weeks = (Week(datetime(2026, 11, 2, tzinfo=UTC), 10, 9, 1),)
    return MetricsReport(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), None, "production",
                         figs, weeks, "weekly", tuple(f"REL-{i}" for i in range(2000)), ())


def test_the_messages_keep_within_slack_limits_and_escape_names():
    period = parse_period("2026-11", NOW, MP)
    text, blocks = metrics_message(period, _report(), _report(), "<!here>")
    assert len(blocks) <= 50 and "<!here>" not in text and "&lt;!here&gt;" in text
    for b in blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
    post = review_text("monthly", period, _report(), None)
    assert len(post) <= 3500 and "releasebot metrics --snapshot 2026-11" in post
    assert "Outside target" in post and "REL-0" in post
