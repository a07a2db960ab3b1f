"""The KPI chart: deployment frequency and change failure rate by week, with the QMS 4.2 targets drawn.

A PNG made by matplotlib's Agg backend (no display: matplotlib.figure.Figure renders with Agg when saved), sized for Slack's preview (about 360 px wide shows
it whole, so the text is large and there are two panels, not one with two axes). Registered as the
`metrics_chart` upload producer: the file is drawn when the outbox row is sent, from the live record
(args start/end/service) or from a frozen monthly report (args snapshot/period).
"""
from __future__ import annotations

import io
from datetime import datetime

from commands.metrics import MetricsReport, Week, compute
from commands.metrics_review import PRODUCER, frozen

from bot import uploads


def chart_png(weeks: tuple[Week, ...], *, title: str, frequency_target: float, cfr_target: float) -> bytes:
    out = io.BytesIO()
    figure(weeks, title=title, frequency_target=frequency_target, cfr_target=cfr_target).savefig(out, format="png")
    return out.getvalue()


def figure(weeks: tuple[Week, ...], *, title: str, frequency_target: float, cfr_target: float):
    # Imported here, not at start-up: matplotlib takes seconds to import, and most processes never draw.
    # A Figure made directly (not pyplot) needs no display and no global state: Agg renders it.
    from matplotlib.figure import Figure as Canvas
    fig = Canvas(figsize=(6, 5.2), dpi=100)  # 600 x 520 px; a 360 px preview keeps 13 pt text legible
    top, bottom = fig.subplots(2, 1, sharex=True)
    labels = [w.start.strftime("%d %b") for w in weeks]
    x = range(len(weeks))
    top.bar(x, [w.successes for w in weeks], color="#2b6cb0", label="successful deployments")
    top.axhline(frequency_target, color="#c05621", linestyle="--", linewidth=2,
                label=f"target ≥ {frequency_target:g} a week")
    top.set_ylim(0, max([frequency_target, *(w.successes for w in weeks)]) * 1.45)  # room for the legend
    top.set_ylabel("deployments", fontsize=13)
    top.set_title(title, fontsize=15)
    top.legend(fontsize=10, loc="upper left")
    rates = [w.failure_rate for w in weeks]
    bottom.plot([i for i, r in zip(x, rates) if r is not None], [r for r in rates if r is not None],
                marker="o", color="#c53030", linewidth=2.5, label="change failure rate")
    bottom.axhline(cfr_target, color="#c05621", linestyle="--", linewidth=2, label=f"target < {cfr_target:g}%")
    bottom.set_ylabel("failures %", fontsize=13)
    bottom.set_ylim(0, max([cfr_target * 2, *(r for r in rates if r is not None)]) * 1.45)  # as above
    bottom.legend(fontsize=10, loc="upper left")
    bottom.set_xlabel("week starting", fontsize=13)
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, rotation=45 if len(weeks) > 6 else 0, fontsize=11, ha="right" if len(weeks) > 6 else "center")
    for ax in (top, bottom):
        ax.tick_params(axis="y", labelsize=11)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def alt_text(weeks: tuple[Week, ...]) -> str:
    per = ", ".join(f"{w.start:%d %b}: {w.successes} deployed, "
                    + (f"{w.failure_rate:.0f}% failed" if w.failure_rate is not None else "none finished")
                    for w in weeks[-8:])
    return ("Deployment frequency and change failure rate by week. " + per)[:1000]


@uploads.producer(PRODUCER)
def _chart(db, clock, policy, *, start: str | None = None, end: str | None = None, service: str | None = None,
           snapshot: str | None = None, period: str | None = None, title: str = "Release metrics") -> uploads.Upload:
    report: MetricsReport | None = None
    if snapshot and period:
        found = frozen(db, period, snapshot)
        report = found[0] if found else None
    if report is None:
        report = compute(db, datetime.fromisoformat(start), datetime.fromisoformat(end), service=service,
                         policy=policy)
    targets = policy.metrics.targets
    png = chart_png(report.weeks, title=title + (f" ({service})" if service else ""),
                    frequency_target=targets["deployments_per_week"], cfr_target=targets["change_failure_rate"])
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in title.lower())
    return uploads.Upload(f"{name}.png", png, title, alt_text=alt_text(report.weeks))
