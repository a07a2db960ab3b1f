"""The `/release …` grammar: each subcommand's right form (shown with every refusal and in help), and the
fields each takes. commands.text parses against it; bot/messages/help.py explains it."""
from __future__ import annotations

USAGE: dict[str, str] = {
    # Examples never name a fixed date (it would soon be in the past): a start people may type today.
    "request": '/release request service=payments version=2.3.1 type=minor start="next monday 14:00" '
               'tz=Europe/London duration=60m summary="Add refunds" '
               "flags=feature,sensitive,…|none [env=production] [risk=…] [rollback=…] [links=…] [notes=https://…] "
               "[runbook=https://…]"
               "   (flags: the yes answers, or none; without them the form opens; with flags=incident also "
               "incident=INC-…)",
    "emergency": '/release emergency service=payments incident=INC-4211 summary="Stop double charges" '
                 "[version=…] [security=yes] [env=production]   (QMS 4.6: the window opens now)",
    "assess": '/release assess REL-12 [blast_radius="…"] [rollback="…"] [scope=confirmed] [ci=passed]   '
              "(an emergency's assessment, any subset at a time)",
    "go": "/release go REL-12 [note=…] [role=qa_lead]",
    "nogo": '/release nogo REL-12 reason="…" [role=qa_lead]',
    "withdraw": "/release withdraw REL-12",
    "show": "/release show REL-12",
    "list": "/release list [pending|upcoming|mine]",
    "cancel": '/release cancel REL-12 reason="…"',
    "edit": '/release edit REL-12 [version=…] [summary="…"] [start="YYYY-MM-DD HH:MM"] [tz=…] [duration=…] '
            '[risk=…] [links=…] [reason="…"] [notes=https://…] [runbook=https://…] [rollback="…"]   (any change '
            "but the documents (notes, runbook, rollback) starts a new round of votes; after approval it needs "
            "reason=)",
    "test": '/release test REL-12 phase=security status=passed|failed url=https://… [summary="…"] '
            "[artifact=payments:2.3.1]   (a test phase's result, QMS 4.3; uat is the product owner's)",
    "waive": '/release waive REL-12 item=performance|runbook|… reason="…"   (a release manager\'s written '
             "exception for a required test phase or document)",
    "accept": '/release accept REL-12 reason="…"   (a release manager accepts a misclassification; '
              "the requested type's controls then apply alone)",
    "misclassified": '/release misclassified REL-12 reason="…"   (a release manager, after deployment: the type '
                     "was wrong; a non-conformance, QMS 6.2)",
    "reschedule": '/release reschedule REL-12 start="YYYY-MM-DD HH:MM" [tz=…] [duration=…] [reason="…"]',
    "deploy": "/release deploy REL-12   (opens the pre-deployment form: checklist, artefact, commit; a manual "
              "production start also needs a justification)",
    "rollback": '/release rollback REL-12 reason="…"',
    "done": "/release done REL-12 outcome=success|rolled_back|failed [note=…] [link=…]   (rolled_back: "
            '[decided="YYYY-MM-DD HH:MM"] [restored="YYYY-MM-DD HH:MM"], in your zone)',
    "signoff": "/release signoff REL-12 [role=qa_lead|operations|release_manager]",
    "followup": '/release followup REL-12 evidence="…" [actions="…"]',
    "retro": '/release retro REL-12 notes="…" [actions="…"]',
    "validate": '/release validate REL-12 note="incident resolved, no new error patterns"   (on-call, after the '
                "emergency's minimum monitoring)",
    "step": "/release step REL-12 change_request link=CR-123 | planning note=… | test_review note=… | "
            'docs link=<release notes> runbook=<runbook> | retrospective note=… | root_cause_review note=…   '
            "(an emergency's deferred steps)",
    "override": '/release override REL-12 kind=lead_time|window|blackout|conflict reason="…"',
    "calendar": "/release calendar [days=14] [service=payments]",
    "blackout": '/release blackout add name="…" start="YYYY-MM-DD HH:MM" end="YYYY-MM-DD HH:MM" tz=Europe/London '
                '[services=a,b] [environments=production] [repeat="FREQ=WEEKLY;BYDAY=FR"] | '
                '/release blackout list | /release blackout remove 3 [reason="…"] | '
                '/release blackout subscribe url=https://… name="…" [tz=…] [services=…] [environments=…]',
    "roles": "/release roles   (who holds each role, and which are empty)",
    "metrics": "/release metrics [last-week|this-month|2026-11|2026-W48|2026-Q4|30d] [service]   "
               "(the QMS 4.2 KPIs with n, targets and the trend; the chart comes by DM)",
    "help": "/release help [request|approve|deploy|after|calendar|admin]",
    "log": "/release log REL-12 text…   or   /release log REL-12 correct=<entry number> text…"
           "   (an emergency's decision log)",
    "bridge": '/release bridge close REL-12 summary="…"   (once validation is recorded)',
    "nc": '/release nc list [open|overdue|mine] | /release nc show NC-3 | '
          '/release nc plan NC-3 owner=@person action="…" [root_cause="…"] | '
          '/release nc done NC-3 evidence="…" [root_cause="…"] | /release nc verify NC-3 | '
          '/release nc close NC-3 [root_cause="…"]   (the non-conformance register, QMS 6.2)',
    "evidence": "/release evidence REL-12   (the evidence packet, HTML, to your DM: release managers and auditors)",
}
# What `/release help <topic>` explains, by what someone wants to do (bot/messages/help.py has the text).
HELP_TOPICS = ("request", "approve", "deploy", "after", "calendar", "admin")

KEYS: dict[str, set[str]] = {
    "request": {"service", "version", "type", "start", "tz", "duration", "summary", "env", "environment",
                "flags", "risk", "rollback", "links", "incident", "notes", "runbook"},
    "emergency": {"service", "incident", "summary", "version", "security", "env", "environment"},
    "assess": {"blast_radius", "rollback", "scope", "ci"},
    "go": {"note", "role"},
    "nogo": {"reason", "role"},
    "withdraw": set(),
    "show": set(),
    "list": set(),
    "cancel": {"reason"},
    "edit": {"version", "summary", "start", "tz", "duration", "risk", "rollback", "links", "reason", "notes",
             "runbook"},
    "test": {"phase", "status", "url", "summary", "artifact"},
    "waive": {"item", "reason"},
    "accept": {"reason"},
    "misclassified": {"reason"},
    "reschedule": {"start", "tz", "duration", "reason"},
    "deploy": set(),
    "rollback": {"reason"},
    "done": {"outcome", "note", "link", "decided", "restored"},
    "signoff": {"role"},
    "followup": {"evidence", "actions"},
    "retro": {"notes", "actions"},
    "validate": {"note"},
    "step": {"link", "runbook", "note"},
    "override": {"kind", "reason"},
    "calendar": {"days", "service"},
    "blackout": {"name", "start", "end", "tz", "services", "environments", "repeat", "url", "reason"},
    "roles": set(),
    "metrics": {"service", "period"},
    "log": {"correct"},
    "bridge": {"summary"},
    "nc": {"owner", "action", "root_cause", "evidence"},
    "evidence": set(),
    "help": set(),
}
# `/release nc <verb>`: the fields each takes (the register's use cases: commands/nonconformance_register.py)
NC_VERBS = {
    "list": set(),
    "show": set(),
    "plan": {"owner", "action", "root_cause"},
    "done": {"evidence", "root_cause"},
    "verify": set(),
    "close": {"root_cause"},
}
NC_LISTS = ("open", "overdue", "mine")
BLACKOUT_KEYS = {
    "add": {"name", "start", "end", "tz", "services", "environments", "repeat"},
    "subscribe": {"url", "name", "tz", "services", "environments"},
    "list": set(),
    "remove": {"reason"},
}
