"""`releasebot evidence …` and `releasebot audit REL-n`: what an auditor takes away. Read-only: the database
is never migrated (an out-of-date schema is refused, bot.cli._require_latest_schema) and every read is a
read-only transaction (storage.db.read)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bot.config import ConfigError, load_policy

EVIDENCE_HELP = ("the evidence packet of one release (REL-n), or with --from/--to the population: every "
                 "deployment in the period, for auditors (read-only)")


def add_parsers(sub) -> None:
    ev = sub.add_parser("evidence", help=EVIDENCE_HELP, description=EVIDENCE_HELP)
    ev.add_argument("release", nargs="?", help="REL-n: one release's evidence packet")
    ev.add_argument("--format", help="html (default), json or md for a packet; csv (default) or json for the "
                                     "population")
    ev.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    ev.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="the population from this day (UTC)")
    ev.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="… to this day, included")
    ev.add_argument("--environment", help="only deployments to this environment (e.g. production)")


def audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default): the record as people read it; json: every row, for tools")


def run_evidence(args, database) -> int:
    from commands.clock import SystemClock
    from commands.errors import InputError
    from commands.text import parse_ref

    from bot import evidence_render
    population = args.start is not None or args.end is not None
    if population == (args.release is not None):
        raise ConfigError("give either a release (releasebot evidence REL-12) or a period "
                          "(releasebot evidence --from 2026-10-01 --to 2026-12-31), not both or neither")
    formats = evidence_render.POPULATION_FORMATS if population else evidence_render.FORMATS
    fmt = args.format or formats[0]
    if fmt not in formats:
        raise ConfigError(f"--format is {' or '.join(formats)} for {'the population' if population else 'a packet'}, "
                          f"not {fmt!r}")
    engine = database(migrate=False)
    try:
        if population:
            from commands import population as pop
            if not (args.start and args.end):
                raise ConfigError("the population needs both --from and --to (dates like 2026-10-01)")
            start, end = pop.period(args.start, args.end)
            rows = pop.rows(engine, start, end, args.environment, _policy())
            text = evidence_render.population_text(rows, fmt, {"from": args.start, "to": args.end,
                                                               "environment": args.environment})
        else:
            from commands import evidence
            text = evidence_render.render(evidence.packet(engine, parse_ref(args.release), SystemClock().now(),
                                                          _policy()), fmt)
    except InputError as exc:
        print(exc.message + (f"\n{exc.form}" if exc.form else ""), file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return _write(text, args.output)


def _write(text: str, output: str | None) -> int:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _policy():
    """The policy in force, as the bot loads it: it says which documents and test phases a type requires."""
    named = os.environ.get("RELEASE_POLICY")
    return load_policy(named or "policy.toml", required=bool(named))


def run_audit(ref: str, fmt: str, database) -> int:
    from commands.clock import SystemClock
    from commands.errors import InputError
    from commands.evidence import build
    from commands.evidence_chain import status
    from commands.record import show_release
    from commands.text import parse_ref
    engine = database(migrate=False)  # it audits the database: it never writes to it
    try:
        rec = show_release(engine, parse_ref(ref))
        if fmt == "json":
            text = json.dumps(record_json(rec), indent=2, default=str) + "\n"
        else:
            text = packet_text(build(rec, status(engine), SystemClock().now(), _policy()))
    except InputError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    sys.stdout.write(text)
    return 0


def packet_text(p) -> str:
    """The packet as a terminal shows it: a line an item, marked, then the trail."""
    from bot.evidence_render import as_data
    d = as_data(p)
    r = d["release"]
    lines = [f"{r['ref']}: {r['service']} {r['version']} to {r['environment']} ({r['type']}, {r['state']})",
             f"Summary: {r['summary']}",
             f"{d['counts']['present']} present, {d['counts']['missing']} missing, {d['counts']['exception']} exception"]
    for s in d["sections"]:
        lines += ["", f"{s['number']}. {s['title']}"]
        for i in s["items"]:
            mark = i["mark"].upper() + (f" ({i['exception']})" if i["exception"] else "")
            lines.append(f"  [{mark}] {i['label']}: {i['text']}")
    lines += ["", "Audit trail", f"  chain: {d['chain']['text']}"]
    for e in d["trail"]:
        seq = e["seq"] if e["seq"] is not None else "-"
        lines.append(f"  {seq:>6}  {e['at']}  {e['actor']}  {e['action']}" + (f": {e['reason']}" if e["reason"] else "")
                     + (f"  [{e['hash']}]" if e["hash"] else ""))
    return "\n".join(lines) + "\n"


def record_json(rec) -> dict:
    """Every row of the record, for tools (`releasebot audit REL-n --format json`); times ISO 8601 UTC."""
    from commands.deferred import LABELS
    from storage.audit import _jsonable

    from bot.times import iso_all
    out = {"release": rec.release.model_dump(), "votes": [v.model_dump() for v in rec.votes],
           "deployment": rec.deployment.model_dump() if rec.deployment else None,
           "signoffs": [x.model_dump() for x in rec.signoffs], "tasks": [t.model_dump() for t in rec.tasks],
           # an emergency's deferred steps (QMS 4.6): owner, deadline, when done and how late
           "deferred_steps": [{"step": t.kind, "label": LABELS[t.kind], "owner": t.owner_id, "due_at": t.due_at,
                               "done_at": t.done_at, "done_by": t.done_by, "details": t.details,
                               "late_by_minutes": max(0, int((t.done_at - t.due_at).total_seconds() // 60))
                               if t.done_at else None} for t in rec.tasks if t.kind in LABELS],
           "test_results": [t.model_dump() for t in rec.test_results],
           "waivers": [w.model_dump() for w in rec.waivers],
           "nonconformances": [n.model_dump() for n in rec.nonconformances],
           "incidents": [i.model_dump() for i in rec.incidents],
           "unmatched_deployments": [u.model_dump() for u in rec.unmatched],
           "planning_flags": [f.model_dump() for f in rec.flags],
           "audit_trail": [e.model_dump() for e in rec.trail]}
    if rec.emergency is not None:
        # QMS 4.6: the bridge record, and the decision log as people read it (timestamps ISO 8601, UTC).
        out["emergency"] = rec.emergency.model_dump()
        out["decision_log"] = [{"at": x.at, "actor": x.actor, "kind": x.kind, "action": x.action, "text": x.text,
                                "entry": x.entry_id, "corrects": x.corrects_id} for x in rec.decision_log]
    return iso_all(_jsonable(out))  # refusals quote times: ISO 8601 here
