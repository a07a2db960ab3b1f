"""`releasebot serve | migrate | audit … | evidence … | outbox [--dead] [--retry ID] | nc list … | metrics …`
(audit: bot/cli_audit.py; evidence: bot/cli_evidence.py; metrics: bot/cli_metrics.py)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from sqlalchemy.exc import OperationalError

from bot import cli_evidence, cli_metrics, logging_safe
from bot.config import ConfigError, load_config, load_policy, operator

# The start-up log is one line per fact (database, channel, mode, listening), all from this logger.
log = logging.getLogger("releasebot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="releasebot", description="Release management from Slack.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="run the bot (HTTP on $PORT, or Socket Mode when SLACK_APP_TOKEN is set)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    # bot/cli_audit.py parses the rest: REL-n [--format text|json] | verify [--checkpoint TEXT] | checkpoint | keygen
    audit = sub.add_parser("audit", add_help=False, help="REL-n: a release's record (text, or --format json); verify, "
                                                         "checkpoint, keygen: the audit log's tamper evidence "
                                                         "(never migrates)")
    audit.add_argument("rest", nargs=argparse.REMAINDER)
    cli_evidence.add_parsers(sub)  # `releasebot evidence …`: the packet and the population
    box = sub.add_parser("outbox", help="list the Slack messages not yet sent (read-only), or retry a dead letter")
    box.add_argument("--dead", action="store_true", help="only dead letters: messages Slack would not take")
    box.add_argument("--retry", type=int, metavar="ID", help="put dead letter ID back for one more try")
    nc = sub.add_parser("nc", help="print the non-conformance register (QMS 6.2) as JSON, read-only")
    nc.add_argument("action", choices=["list"])
    nc.add_argument("which", nargs="?", choices=["open", "overdue", "mine"], default="open",
                    help="open (not closed), overdue (past due, not actioned) or mine (with --owner)")
    nc.add_argument("--owner", metavar="USER_ID", help="the owner's Slack member id, for mine")
    nc.add_argument("--state", choices=["open", "action_planned", "actioned", "verified", "closed"],
                    help="only the NCs in this state (instead of the list)")
    cli_metrics.add_parser(sub)
    args, extra = parser.parse_known_args(argv)
    if args.cmd != "audit" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging_safe.configure(logging.INFO)  # untrusted values cannot forge a log line
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line every tick says nothing
    # "skipped: maximum number of running instances" only means a long sweep is still running.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    logging.getLogger("waitress").setLevel(logging.WARNING)  # "Serving on …" repeats the listening line
    # Alembic logs a "setup plugin" line per plugin when it is imported, then a line per step: none of them
    # is anything an operator acts on (the database line says where the schema is); warnings still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.cmd == "migrate":
            return _migrate()
        if args.cmd == "audit":
            from bot import cli_audit
            return cli_audit.main(extra + args.rest)
        if args.cmd == "evidence":
            return cli_evidence.run_evidence(args, _database)
        if args.cmd == "outbox":
            return _outbox(args.dead, args.retry)
        if args.cmd == "nc":
            return _nc_list(args.which, args.owner, args.state)
        if args.cmd == "metrics":
            return _metrics(args)
        return _serve()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2


def _database(migrate: bool = True, announce: bool = False, pool_size: int | None = None):
    from storage.db import DEFAULT_URL, make_engine
    from storage.migrate import upgrade
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    try:
        engine = make_engine(url, **({"pool_size": pool_size} if pool_size else {}))
        if migrate:
            before, after = upgrade(engine)
            if announce:
                log.info("%s", describe_database(engine, before, after))
        else:
            _require_latest_schema(engine)
    except ConfigError:
        raise
    except OperationalError as exc:
        raise ConfigError(f"releasebot cannot start: the database at DATABASE_URL cannot be used "
                          f"({exc.orig}). Check that it is running and the URL is right.") from None
    except Exception as exc:  # noqa: BLE001 - a bad URL scheme, a missing driver
        raise ConfigError(f"releasebot cannot start: DATABASE_URL is not usable ({exc}). Use sqlite:///path.db "
                          "or postgresql://user@host:5432/db.") from None
    return engine


def describe_database(engine, before: str | None, after: str | None) -> str:
    """Which database, never its password or user: dialect, where, and the schema it is at."""
    url = engine.url
    dialect = url.get_backend_name()
    if dialect == "sqlite":
        where = url.database or ":memory:"
    else:
        where = f"{url.host or 'localhost'}{f':{url.port}' if url.port else ''}/{url.database or ''}"
    schema = after if before == after else f"{after} (upgraded from {before or 'an empty database'})"
    return f"database: {dialect} at {where}, schema {schema}"


def _require_latest_schema(engine) -> None:
    """For commands that only look (or change one row): never migrate, refuse an out-of-date schema."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from storage.migrate import alembic_config
    logging.getLogger("alembic").setLevel(logging.WARNING)  # only looking: its "Context impl" lines say nothing
    path = make_url(str(engine.url)).database if engine.dialect.name == "sqlite" else None
    if path and path != ":memory:" and not os.path.exists(path):
        raise ConfigError(f"there is no database at {path} (DATABASE_URL). Run `releasebot migrate` to create it.")
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    if current != heads:
        raise ConfigError(f"the database at DATABASE_URL is at schema {', '.join(sorted(current)) or 'none'}, "
                          f"not {', '.join(sorted(heads))}. Run `releasebot migrate` first.")


def _outbox(dead_only: bool, retry: int | None) -> int:
    engine = _database(migrate=False)
    try:
        return _outbox_on(engine, dead_only, retry)
    finally:
        engine.dispose()


def _outbox_on(engine, dead_only: bool, retry: int | None) -> int:
    from commands.clock import SystemClock
    from storage import outbox
    if retry is not None:
        if not outbox.requeue_dead(engine, retry, actor=operator(), now=SystemClock().now()):
            print(f"outbox {retry} is not a dead letter (no such row, pending, or already sent); nothing changed.",
                  file=sys.stderr)
            return 1
        print(f"outbox {retry} is pending again for one more try; a running releasebot sends it at its next tick.")
        return 0
    rows, now = outbox.unsent(engine, dead_only=dead_only), SystemClock().now()
    if not rows:
        print("no dead letters" if dead_only else "nothing waiting to be sent")
        return 0
    print(f"{'ID':>6}  {'STATE':<8} {'TRIES':>5}  {'DUE (UTC)':<19}  {'KIND':<16}  {'KEY':<32}  LAST ERROR")
    for r in rows:
        if r.dead_at is not None:
            state = "dead"
            error = f"{r.dead_reason} (dead since {r.dead_at:%Y-%m-%d %H:%M:%S}; {r.result or 'nothing sent instead'})"
        else:
            state = ("claimed" if r.claimed_until and r.claimed_until > now
                     else "retry" if r.dead_reason else "pending")
            error = r.last_error or ""
        print(f"{r.id:>6}  {state:<8} {r.attempts:>5}  {r.due_at:%Y-%m-%d %H:%M:%S}  {r.kind:<16}  {r.key:<32}  "
              f"{error}")
    return 0


def _metrics(args) -> int:
    from commands.clock import SystemClock
    config_policy = load_policy(os.environ.get("RELEASE_POLICY") or "policy.toml",
                                required=bool(os.environ.get("RELEASE_POLICY")))
    engine = _database(migrate=False)
    try:
        return cli_metrics.run(engine, config_policy, args, SystemClock().now())
    finally:
        engine.dispose()


def _migrate() -> int:
    _database()
    print("database is at the latest schema")
    return 0


def _nc_list(which: str, owner: str | None, state: str | None) -> int:
    """The whole list, which Slack shows a page of (bot/messages/nonconformance.py points here)."""
    from commands.clock import SystemClock
    from commands.nonconformance_register import listing
    from storage.audit import _jsonable

    from bot.times import iso_all
    if which == "mine" and not owner:
        print("nc list mine needs --owner U… (the owner's Slack member id)", file=sys.stderr)
        return 2
    engine = _database(migrate=False)
    try:
        entries, total = listing(engine, owner or "", which, SystemClock().now(), limit=1_000_000, state=state)
    finally:
        engine.dispose()
    out = [{"ref": e.nc.ref, "release": e.release_ref, "overdue": e.overdue, **e.nc.model_dump()} for e in entries]
    print(json.dumps(iso_all(_jsonable(out)), indent=2, default=str))
    return 0


def _serve() -> int:
    import waitress
    from slack_sdk.errors import SlackApiError

    from commands.clock import SystemClock

    from bot import membership
    from bot.app import build_app
    from bot.scheduler import build_scheduler
    from bot.server import SERVER_OPTIONS, wsgi_app
    from bot.services import build_services

    config = load_config()
    policy = load_policy(config.policy_path, required=bool(os.environ.get("RELEASE_POLICY")))
    lease = _outbox_lease()
    inbox_lease = _lease_seconds("RELEASEBOT_INBOX_LEASE_SECONDS", 120, "an inbox row",
                                 "a listener's longest after-ack work")
    engine = _database(announce=True, pool_size=config.db_pool)
    needed = {role for t in policy.types.values() for role in t.approvers}
    empty = sorted(role for role in needed if not policy.role_members(role))
    if empty:
        log.warning("nobody holds %s in %s: releases needing them cannot be approved until [roles] names "
                        "someone", ", ".join(empty), policy.source)
    svc = build_services(config, engine, SystemClock(), policy)
    if lease is not None:
        svc.delivery.lease = lease
    try:
        svc.client.auth_test()
    except SlackApiError as exc:
        if exc.response.get("error") in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
            raise ConfigError(f"releasebot cannot start: Slack rejected SLACK_BOT_TOKEN "
                              f"({exc.response.get('error')}). Reinstall the app and copy its bot token.") from None
        log.warning("auth.test failed (%s); starting anyway, announcements wait in the outbox",
                    exc.response.get("error"))
    except OSError as exc:
        log.warning("Slack unreachable at start (%s); starting anyway, announcements wait in the outbox", exc)
    channel = membership.check(svc.client, config.release_channel)
    (log.info if channel.member else log.warning)("%s", channel.log_line())
    from bot.audit_config import start_up_line
    fine, line = start_up_line(config.audit_channel, config.audit_key, policy.audit.checkpoint_every)
    (log.info if fine else log.warning)("%s", line)
    app = build_app(svc, inbox_lease=inbox_lease)
    scheduler = build_scheduler(svc, app.inbox)
    # Before the scheduler starts: its first sweep runs at once, and a SIGTERM
    # during it must be an orderly stop too.
    signal.signal(signal.SIGTERM, _stop)
    try:
        scheduler.start()
        if config.app_token:
            from bot import socket_mode
            try:
                # Returns once connected; Slack's requests then arrive on the client's own threads, and
                # the HTTP server below serves the pipeline API, the feed and /healthz (not /slack/events).
                socket_mode.connect(app, svc)
            except SlackApiError as exc:
                raise ConfigError(f"releasebot cannot start: Slack refused the Socket Mode connection "
                                  f"({exc.response.get('error')}). Check SLACK_APP_TOKEN: an app-level token "
                                  "(xapp-…) with the connections:write scope.") from None
            log.info("mode: Socket Mode, connected to Slack (its requests arrive over the WebSocket, not HTTP)")
        else:
            log.info("mode: HTTP, Slack sends its requests to /slack/events (signed)")
        if config.github is not None:
            log.info("github: App %s, deliveries to /github/webhook (signed), calls only under %s",
                     config.github.app_id, config.github.api_url)
        log.info("listening on :%s (%s/api/v1/, /calendar.ics, /healthz)", config.port,
                 "" if config.app_token else "/slack/events, ")
        waitress.serve(wsgi_app(app, engine, svc), host="0.0.0.0", port=config.port,
                       **{**SERVER_OPTIONS, "threads": config.http_threads})
    except KeyboardInterrupt:
        pass
    finally:
        # The send under way finishes and is marked sent; claimed rows not yet
        # started go back to the outbox at once; then the process exits.
        # After-ack work under way finishes and is marked done; inbox rows not yet started stay in the
        # inbox, unclaimed, for the next process (or another one running now).
        svc.delivery.stop()
        app.inbox.stop()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        app.listener_runner.listener_executor.shutdown(wait=True)
    return 0


def _outbox_lease():
    """RELEASEBOT_OUTBOX_LEASE_SECONDS: how long a claimed outbox row is held before another process
    may take it (default 60). Tests shorten it to see a killed process's claims expire; in production it
    must stay well above a Slack call's timeout (10 s)."""
    return _lease_seconds("RELEASEBOT_OUTBOX_LEASE_SECONDS", 60, "an outbox row", "a Slack call's timeout")


def _lease_seconds(name: str, default: int, what: str, above: str):
    """How long a claim on {what} is held before another process may take it; None for the default.
    Tests shorten it to see a killed process's claims expire; in production it stays well above {above}."""
    from datetime import timedelta
    value = (os.environ.get(name) or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 3600:
        raise ConfigError(f"releasebot cannot start: {name} '{value}' is not a number of seconds from 1 to 3600 "
                          f"(how long a claim on {what} is held). Unset it to use the default, {default}.")
    return timedelta(seconds=seconds)


def _stop(*_args) -> None:
    # SIGTERM (a deploy, a scale-down) becomes the same orderly exit as Ctrl-C.
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

