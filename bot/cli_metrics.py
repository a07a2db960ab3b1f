"""`releasebot metrics`: the KPIs on the command line (read-only), or a frozen monthly report reprinted.

    releasebot metrics [--from 2026-09-01 --to 2026-11-30 | --period 2026-Q4] [--service payments]
                       [--format text|json|csv] [--explain] [--snapshot 2026-11]
"""
from __future__ import annotations

import csv
import io
import json
import sys

from commands.errors import InputError
from commands.metrics import MetricsReport, compute
from commands.metrics_period import parse_period, parse_range
from commands.metrics_review import MONTHLY, WEEKLY, frozen


def add_parser(sub) -> None:
    p = sub.add_parser("metrics", help="print the QMS 4.2 KPIs and DORA metrics from the record (read-only)")
    p.add_argument("--from", dest="start", metavar="DATE", help="first day, like 2026-09-01 (default: 30 days ago)")
    p.add_argument("--to", dest="end", metavar="DATE", help="last day, included (default: today)")
    p.add_argument("--period", help="instead of --from/--to: last-week, 2026-11, 2026-W48, 2026-Q4, 30d")
    p.add_argument("--service", help="one service only")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--explain", action="store_true", help="list the releases behind each figure")
    p.add_argument("--snapshot", metavar="PERIOD",
                   help="reprint a review as it was posted: 2026-11 (monthly report) or 2026-W48 (weekly review)")


def run(engine, policy, args, now, out=None) -> int:
    out = out or sys.stdout
    try:
        if args.snapshot:
            kind = WEEKLY if "-W" in args.snapshot.upper() else MONTHLY
            found = frozen(engine, args.snapshot.upper() if kind == WEEKLY else args.snapshot, kind)
            if found is None:
                print(f"there is no {kind} snapshot for {args.snapshot}: that review has not been posted yet "
                      "(monthly reports go out on the first working day of the next month)", file=sys.stderr)
                return 1
            report, row = found
            header = (f"{kind} review {row.period}, frozen {row.created_at:%Y-%m-%d %H:%M} UTC, sha256 {row.digest}")
        else:
            if args.start:
                period = parse_range(args.start, args.end, now, policy.metrics)
            else:
                if args.end:
                    raise InputError("--to needs --from")
                period = parse_period(args.period, now, policy.metrics)
            report = compute(engine, period.start, period.end, service=args.service, policy=policy,
                             explain=args.explain)
            header = f"metrics {period.label}"
    except InputError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    out.write(render(report, args.format, header, args.explain))
    return 0


def render(report: MetricsReport, fmt: str, header: str, explain: bool) -> str:
    if fmt == "json":
        data = {"title": header, **report.as_dict()}
        if explain:
            data["explain"] = {f.key: [{"release": r, "counted": why} for r, why in f.releases] for f in report.figures}
        return json.dumps(data, indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["key", "label", "value", "n", "unit", "target", "met", "enough", "text"])
        for f in report.figures:
            w.writerow([f.key, f.label, "" if f.value is None else round(f.value, 3), f.n, f.unit, f.target or "",
                        "" if f.met is None else f.met, f.enough, f.text])
        if explain:
            w.writerow([])
            w.writerow(["key", "release", "counted"])
            for f in report.figures:
                for r, why in f.releases:
                    w.writerow([f.key, r, why])
        return buf.getvalue()
    scope = report.service or "all services"
    lines = [f"{header} ({scope}, {report.environment}; from {report.start:%Y-%m-%d %H:%M} to "
             f"{report.end:%Y-%m-%d %H:%M} UTC, deployments by their start)"]
    width = max(len(f.label) for f in report.figures)
    for f in report.figures:
        state = "" if f.met is None else ("  ok" if f.met else "  OUTSIDE TARGET")
        target = f"  target {f.target}" if f.target else ""
        lines.append(f"  {f.label:<{width}}  {f.text}{target}{state}")
        if explain:
            lines.extend(f"      {r}: {why}" for r, why in f.releases)
    lines.append(f"  rollbacks: {', '.join(report.rollbacks) or 'none'}")
    lines.append(f"  emergency releases: {', '.join(report.emergencies) or 'none'}")
    return "\n".join(lines) + "\n"
