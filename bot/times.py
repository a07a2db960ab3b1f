"""The neutral form of the times commands/ marks in its sentences (commands.text.when): ISO 8601 UTC,
for the Pipeline API, the CLI's audit export and modal errors (plain text, where <!date^…> does not render).
Slack's own form is bot.messages.common.esc."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from commands.text import render_times


def planned_in(dt: datetime, show: str, tz: str | None) -> str:
    """" (14:00 Europe/London)": the wall clock in the zone it was planned in, after the reader's own."""
    if not tz or tz == "UTC" or show == "d":
        return ""
    try:
        local = dt.astimezone(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f" ({tz})"
    return f" ({local:%H:%M} {tz})" if show == "t" else f" ({local:%Y-%m-%d %H:%M} {tz})"


def iso(dt: datetime, show: str = "dt", tz: str | None = None) -> str:
    """ISO 8601 in UTC: the neutral form of a marker (Pipeline API, CLI, modal errors)."""
    dt = dt.astimezone(timezone.utc)
    return (f"{dt:%Y-%m-%d}" if show == "d" else f"{dt:%Y-%m-%dT%H:%M:%SZ}") + planned_in(dt, show, tz)


def iso_times(text: str) -> str:
    return render_times(text, lambda dt, show, tz: iso(dt, show, tz))


def iso_all(value):
    """Every string in this JSON-like value with its times as ISO 8601 (an API body, the audit export)."""
    if isinstance(value, str):
        return iso_times(value)
    if isinstance(value, dict):
        return {key: iso_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [iso_all(item) for item in value]
    return value
