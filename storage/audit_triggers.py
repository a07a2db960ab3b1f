"""The append-only triggers on audit_event, as migration 0015 makes them (and tests that drop them, as a
tamperer would, put them back).

The one update they let through: an event written in a transaction takes its place in the chain as the
transaction commits (storage.audit_chain.chain_pending): seq goes from NULL to a value and nothing else
changes. Any other UPDATE, and every DELETE, is refused.
"""
from __future__ import annotations

MESSAGE = "audit_event is append-only"
_SAME = ("NEW.id = OLD.id AND NEW.release_id IS NOT DISTINCT FROM OLD.release_id AND NEW.actor = OLD.actor "
         "AND NEW.action = OLD.action AND NEW.at = OLD.at AND NEW.reason IS NOT DISTINCT FROM OLD.reason "
         "AND NEW.before::text = OLD.before::text AND NEW.after::text = OLD.after::text")
_SAME_SQLITE = ("NEW.id IS OLD.id AND NEW.release_id IS OLD.release_id AND NEW.actor IS OLD.actor AND NEW.action "
                "IS OLD.action AND NEW.at IS OLD.at AND NEW.reason IS OLD.reason AND NEW.before IS OLD.before "
                "AND NEW.after IS OLD.after")


def drop(pg: bool) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS audit_event_no_{verb}" + (" ON audit_event" if pg else "")
            for verb in ("update", "delete")]


def create(pg: bool, chained: bool = True) -> list[str]:
    """chained=False: 0002's triggers, which refuse every update (for 0015's downgrade)."""
    statements = []
    if pg:
        allow = (f"IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL AND {_SAME} THEN "
                 "RETURN NEW; END IF; ") if chained else ""
        statements.append("CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
                          f"BEGIN {allow}RAISE EXCEPTION '{MESSAGE}'; END; $$ LANGUAGE plpgsql")
    for verb in ("UPDATE", "DELETE"):
        if pg:
            statements.append(f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()")
        else:
            when = (f" WHEN NOT (OLD.seq IS NULL AND NEW.seq IS NOT NULL AND {_SAME_SQLITE})"
                    if verb == "UPDATE" and chained else "")
            statements.append(f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event{when} "
                              f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")
    return statements
