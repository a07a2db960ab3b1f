"""The things every listener needs, built once per process."""
from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from sqlalchemy.engine import Engine

from commands.clock import Clock
from commands.outcome import Actor
from commands.policy import Policy
from storage import ack_lane
from storage.db import is_postgres

from bot.config import Config, check_api_environments
from bot.delivery import Delivery
from bot.people import People
from bot.roles import RoleDirectory


@dataclass
class Services:
    config: Config
    db: Engine
    clock: Clock
    policy: Policy
    client: WebClient
    roles: RoleDirectory
    delivery: Delivery
    people: People

    def refresh_calendars(self) -> None:
        from bot.calendar_sync import sync
        sync(self)

    def actor(self, user_id: str) -> Actor:
        """The one way a listener learns who someone is: the roles Slack confirmed, and those it
        could not check just now (so a use case can say "try again" instead of refusing)."""
        roles, unresolved = self.roles.resolve(user_id)
        return Actor(user_id, roles, unresolved)


def build_services(config: Config, db: Engine, clock: Clock, policy: Policy) -> Services:
    check_api_environments(config, policy)
    # Retries of 429/5xx are the outbox's job (it reschedules instead of blocking a
    # thread); the client only retries a dropped connection once.
    client = WebClient(token=config.bot_token, base_url=config.api_url, timeout=10,
                       retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)])
    roles = RoleDirectory(policy, client, clock)
    if is_postgres(db):
        ack_lane.lane(db, config.http_threads)  # an ack's connection for each thread that answers Slack
    svc = Services(config=config, db=db, clock=clock, policy=policy, client=client, roles=roles,
                   delivery=Delivery(db, client, clock, config.release_channel, policy, roles=roles),
                   people=People(client, clock))
    if config.github is not None:
        from bot.github.worker import GitHubDelivery
        svc.delivery.github = GitHubDelivery(svc)
    return svc
