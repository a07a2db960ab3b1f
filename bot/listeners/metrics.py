"""`/release metrics [period] [service]`: the KPIs with their n, targets and trend, and the chart by DM."""
from __future__ import annotations

from datetime import timedelta

from commands import announce
from commands.errors import InputError
from commands.metrics import compute
from commands.metrics_period import parse_period
from commands.metrics_review import CHART_WEEKS, PRODUCER
from commands.text import SERVICE_NAME, ParsedCommand
from commands.usage import USAGE
from storage.db import transaction

from bot import metrics_chart  # noqa: F401  (registers the chart producer in every process that delivers)
from bot.listeners.common import kick, run
from bot.messages.metrics import metrics_message
from bot.services import Services


def handle(svc: Services, cmd: ParsedCommand, body: dict, respond, tell) -> None:
    user = body["user_id"]

    def work() -> None:
        now, mp = svc.clock.now(), svc.policy.metrics
        words = list(cmd.positional)
        period_text = cmd.args.get("period") or None
        service = cmd.args.get("service") or None
        if words and period_text is None:
            try:
                parse_period(words[0], now, mp)
                period_text = words.pop(0)
            except InputError:
                if service is not None or len(words) > 1:
                    raise
        if words and service is None:
            service = words.pop(0)  # "/release metrics payments": a lone word that is no period is a service
        if words:
            raise InputError(f"'{words[0]}' is not understood here", form=USAGE["metrics"])
        if service is not None and not SERVICE_NAME.match(service):
            raise InputError("service is a service name, e.g. payments-api", field="service", form=USAGE["metrics"])
        period = parse_period(period_text, now, mp)
        before = period.previous(mp.review_tz)
        report = compute(svc.db, period.start, period.end, service=service, policy=svc.policy)
        previous = compute(svc.db, before.start, before.end, service=service, policy=svc.policy)
        text, blocks = metrics_message(period, report, previous, service)
        respond(text=text, blocks=blocks)
        key = f"metrics-chart:{user}:{body.get('trigger_id') or now.isoformat()}"[:255]
        args = {"start": min(period.start, period.end - timedelta(weeks=CHART_WEEKS)).isoformat(),
                "end": period.end.isoformat(), "service": service, "title": f"Release metrics, {period.label}"}
        with transaction(svc.db) as session:
            announce.upload(session, key=key, producer=PRODUCER, args=args, now=now, user=user,
                            comment=f"The chart for {text}")
        kick(svc, [key])

    run(svc, tell, work, form_of="metrics")
