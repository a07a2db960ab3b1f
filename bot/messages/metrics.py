"""The metrics as people read them in Slack: `/release metrics` and the QMS 6.1 review posts. Pure
functions of commands.metrics reports; within Slack's limits (50 blocks, 3,000 characters a section)."""
from __future__ import annotations

from commands.metrics import Figure, MetricsReport
from commands.metrics_period import Period

from bot.messages.common import esc

SECTION_LIMIT = 3000
COMMENT_LIMIT = 3500  # a file's initial comment: kept short, the figures are in it
# what the weekly review covers (QMS 6.1: frequency, success rate, MTTD, rollbacks and emergencies)
WEEKLY_KEYS = ("deployment_frequency", "success_rate", "time_to_deploy", "time_to_deploy_infrastructure",
               "change_failure_rate", "rollback_rate")


def trend(fig: Figure, prev: Figure | None) -> str:
    """How the figure moved since the period before: an arrow and the earlier value."""
    if prev is None or fig.value is None or prev.value is None:
        return "" if prev is None else f" (before: {prev.text})"
    arrow = "→" if abs(fig.value - prev.value) < 1e-9 else "↑" if fig.value > prev.value else "↓"
    return f" {arrow} (before: {prev.text})"


def _mark(fig: Figure) -> str:
    return ":white_check_mark:" if fig.met else ":warning:" if fig.met is False else ":grey_question:"


def line(fig: Figure, prev: Figure | None = None) -> str:
    target = f", target {fig.target}" if fig.target else ""
    return f"{_mark(fig)} *{fig.label}*: {fig.text}{target}{trend(fig, prev)}"


def _previous(report: MetricsReport | None, key: str) -> Figure | None:
    if report is None:
        return None
    return next((f for f in report.figures if f.key == key), None)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def metrics_message(period: Period, report: MetricsReport, previous: MetricsReport | None,
                    service: str | None) -> tuple[str, list[dict]]:
    """The answer to `/release metrics`: every figure with its n, target and trend, and what to do next."""
    scope = f"*{esc(service)}*" if service else "all services"
    title = f"Release metrics, {esc(period.label)} ({scope}, {esc(report.environment)})"
    lines = [line(f, _previous(previous, f.key)) for f in report.figures]
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": _clip(title.replace("*", ""), 150)}}]
    chunk: list[str] = []
    for ln in lines:  # sections of whole lines, each under Slack's 3,000 characters
        if chunk and len("\n".join([*chunk, ln])) > SECTION_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk = []
        chunk.append(_clip(ln, SECTION_LIMIT))
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(
        f"n is the number of deployments behind each figure; below {report.min_sample} it says too few. "
        f"Trend against {esc(period.previous('UTC').label if period.kind != 'month' else 'the month before')}. "
        "The chart comes by DM. `releasebot metrics --explain` lists the releases behind each figure.", 2000)}]})
    return title, blocks


def review_text(kind: str, period: Period, report: MetricsReport, previous: MetricsReport | None) -> str:
    """The weekly review post or the monthly KPI report (QMS 6.1), posted with the chart."""
    if kind == "weekly":
        head = f":bar_chart: *Weekly metrics review, {period.label}* (QMS 6.1)"
        figures = [f for f in report.figures if f.key in WEEKLY_KEYS]
    else:
        head = (f":bar_chart: *Monthly KPI report, {period.label}* (QMS 6.1). These figures are frozen: "
                f"`releasebot metrics --snapshot {period.label}` reprints them.")
        figures = list(report.figures)
    parts = [head, *(line(f, _previous(previous, f.key)) for f in figures)]
    outside = report.outside_target()
    if outside:
        owner = "named action items with an owner are due" if kind == "monthly" else "to be escalated"
        parts.append(f"*Outside target* ({owner}): " + ", ".join(f"{f.label} ({f.text})" for f in outside))
    else:
        parts.append("*Outside target:* none")
    parts.append("*Rollbacks:* " + _refs(report.rollbacks))
    parts.append("*Emergency releases:* " + _refs(report.emergencies))
    return _clip("\n".join(parts), COMMENT_LIMIT)


def _refs(refs: tuple[str, ...], most: int = 30) -> str:
    """The releases, or the first of them and how many more (`releasebot metrics --explain` has all)."""
    if not refs:
        return "none"
    shown = ", ".join(refs[:most])
    return shown if len(refs) <= most else f"{shown} and {len(refs) - most} more"
