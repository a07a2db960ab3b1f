"""Configuration from the environment, checked once at start-up.

A bad setting ends start-up with one paragraph that says what to set, not a
traceback: the person reading it is an operator, not the author.
"""
from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from calendars.netpolicy import AllowList, NetPolicy, parse_allow
from bot.github.config import GitHubConfig, github_config
from commands.policy import Policy, PolicyError
from storage.db import DEFAULT_URL

from bot.audit_config import audit_settings

SLACK_API_DEFAULT = "https://slack.com/api/"
DEFAULT_WORKERS = 8
MAX_WORKERS = 16
# waitress's threads. The pipeline API and the feed may hold 3 + 2 of them (bot/server.py API_CONCURRENCY,
# bot/feed.py FEED_RENDERS); the rest are Slack's acks, which are short but arrive in bursts.
DEFAULT_HTTP_THREADS = 16
MIN_HTTP_THREADS, MAX_HTTP_THREADS = 6, 64
# Connections besides the HTTP threads' and the workers': the scheduler, the delivery loop, the two calendar
# fetchers. With this many an ack never waits for a connection that after-ack work holds.
POOL_SPARE = 4
MAX_POOL = 200


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    bot_token: str
    signing_secret: str
    api_url: str
    database_url: str
    release_channel: str
    policy_path: str
    port: int
    app_token: str | None
    public_url: str | None
    feed_secret: str | None = None
    # Pipeline API: sha256 hex digest of each bearer token -> what that pipeline may do.
    # The tokens themselves are not kept.
    api_tokens: Mapping[str, "ApiToken"] = field(default_factory=dict)
    # Internal hosts, addresses and ranges a subscribed calendar may be fetched from (public ones always may).
    calendar_allow: AllowList = field(default_factory=AllowList)
    # Threads that run listeners' after-ack work (inbox rows): RELEASEBOT_WORKERS.
    workers: int = DEFAULT_WORKERS
    # waitress's threads (Slack's acks, the API, the feed, /healthz): RELEASEBOT_HTTP_THREADS.
    http_threads: int = DEFAULT_HTTP_THREADS
    # Database connections this process may hold at once: RELEASEBOT_DB_POOL (default: enough for all).
    db_pool: int = DEFAULT_HTTP_THREADS + DEFAULT_WORKERS + POOL_SPARE
    # The GitHub App (GITHUB_*; bot/github/config.py); None: GitHub is off.
    github: GitHubConfig | None = None
    # Signed audit checkpoints (bot/audit_config.py): AUDIT_CHANNEL, and RELEASEBOT_AUDIT_KEY's Ed25519 key.
    audit_channel: str | None = None
    audit_key: Any = None

    @property
    def calendar_net(self) -> NetPolicy:
        """The address policy for subscribed calendars; the bot's own public host is never a source."""
        return NetPolicy.build(self.calendar_allow, own_urls=[self.public_url])


@dataclass(frozen=True)
class ApiToken:
    """One pipeline's allow-list: where it may deploy, and whether it may name the person it runs for."""

    name: str
    environments: frozenset[str] | None = None  # None: every environment
    act_for_people: bool = False  # False: it acts only as itself, pipeline:<name>


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    get = lambda k: (env.get(k) or "").strip()  # noqa: E731
    problems = []
    token, secret, app_token = get("SLACK_BOT_TOKEN"), get("SLACK_SIGNING_SECRET"), get("SLACK_APP_TOKEN") or None
    if not token:
        problems.append("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…, from the app's OAuth & Permissions page)")
    elif not token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    if not secret and not app_token:
        problems.append("SLACK_SIGNING_SECRET is not set (Basic Information → Signing Secret); it is required "
                        "unless SLACK_APP_TOKEN selects Socket Mode")
    if app_token and not app_token.startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    channel = get("RELEASE_CHANNEL")
    if not channel:
        problems.append("RELEASE_CHANNEL is not set (the id of the channel for approval messages, e.g. C0123ABCD)")
    elif not re.fullmatch(r"[CG][A-Z0-9]{2,}", channel):
        problems.append(f"RELEASE_CHANNEL '{channel}' is not a channel id; use the id (C…), found under the "
                        "channel's name → About")
    api_url = get("SLACK_API_URL") or SLACK_API_DEFAULT
    if not re.match(r"^https?://[^\s/]+", api_url):
        problems.append(f"SLACK_API_URL '{api_url}' is not an http(s) URL")
    if not api_url.endswith("/"):
        api_url += "/"
    port_text = get("PORT") or "3000"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        problems.append(f"PORT '{port_text}' is not a TCP port number")
    api_tokens = _api_tokens(get("RELEASEBOT_API_TOKENS"), problems)
    try:
        calendar_allow = parse_allow(get("RELEASEBOT_CALENDAR_ALLOW"))
    except ValueError as exc:
        calendar_allow = AllowList()
        problems.append(f"RELEASEBOT_CALENDAR_ALLOW is malformed ({exc}); use a comma-separated list of host "
                        "names, addresses and CIDR ranges, e.g. calendar.corp.example,10.20.0.5,10.30.0.0/16")
    workers_text = get("RELEASEBOT_WORKERS") or str(DEFAULT_WORKERS)
    if not workers_text.isdigit() or not 1 <= int(workers_text) <= MAX_WORKERS:
        problems.append(f"RELEASEBOT_WORKERS '{workers_text}' is not a whole number from 1 to {MAX_WORKERS} (the "
                        f"threads that do after-ack work; default {DEFAULT_WORKERS})")
    threads_text = get("RELEASEBOT_HTTP_THREADS") or str(DEFAULT_HTTP_THREADS)
    if not threads_text.isdigit() or not MIN_HTTP_THREADS <= int(threads_text) <= MAX_HTTP_THREADS:
        problems.append(f"RELEASEBOT_HTTP_THREADS '{threads_text}' is not a whole number from {MIN_HTTP_THREADS} to "
                        f"{MAX_HTTP_THREADS} (the HTTP server's threads; 5 may serve the pipeline API and the feed, "
                        f"the rest answer Slack; default {DEFAULT_HTTP_THREADS})")
    threads = int(threads_text) if threads_text.isdigit() else DEFAULT_HTTP_THREADS
    workers = int(workers_text) if workers_text.isdigit() else DEFAULT_WORKERS
    needed = threads + workers
    pool_text = get("RELEASEBOT_DB_POOL") or str(needed + POOL_SPARE)
    if not pool_text.isdigit() or not needed <= int(pool_text) <= MAX_POOL:
        problems.append(f"RELEASEBOT_DB_POOL '{pool_text}' is not a whole number from {needed} (the HTTP threads "
                        f"plus the workers, so no ack waits for a connection after-ack work holds) to {MAX_POOL}; "
                        f"default {needed + POOL_SPARE}")
    github = github_config(get, problems)
    audit_channel, audit_key = audit_settings(get, problems)
    if problems:
        raise ConfigError("releasebot cannot start: " + "; ".join(problems) + ". Set these in the environment "
                          "(see README.md, Configuration) and start again.")
    return Config(bot_token=token, signing_secret=secret, api_url=api_url,
                  database_url=get("DATABASE_URL") or DEFAULT_URL, release_channel=channel,
                  policy_path=get("RELEASE_POLICY") or "policy.toml", port=int(port_text), app_token=app_token,
                  public_url=get("RELEASEBOT_PUBLIC_URL") or None, api_tokens=api_tokens,
                  feed_secret=get("RELEASEBOT_FEED_SECRET") or None, calendar_allow=calendar_allow,
                  workers=workers, http_threads=threads, db_pool=int(pool_text), github=github,
                  audit_channel=audit_channel, audit_key=audit_key)


_PIPELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
MIN_API_TOKEN_LENGTH = 16
API_TOKENS_FORM = ('RELEASEBOT_API_TOKENS="deploy-pipeline=<token>;envs=production+staging;act_for=people,'
                   'nightly=<token>": entries separated by commas, each name=token and then optional '
                   "';envs=<environment>+<environment>' (default: every environment) and ';act_for=people' "
                   "(it may name the person it deploys for) or ';act_for=self' (the default: it acts only as "
                   "pipeline:<name>); a name is up to 40 letters, digits, '.', '_' or '-'; a token is at least "
                   f"{MIN_API_TOKEN_LENGTH} characters with no spaces, commas or semicolons")


def _api_tokens(value: str, problems: list[str]) -> dict[str, ApiToken]:
    """`name=token[;envs=a+b][;act_for=people|self],…` -> {sha256 hex of token: ApiToken}.

    Problems never quote a token: they end up in logs."""
    tokens: dict[str, ApiToken] = {}
    names: set[str] = set()
    wrong = []
    for n, entry in enumerate((e.strip() for e in value.split(",")), start=1):
        if not entry:
            continue  # a trailing comma
        head, *options = (part.strip() for part in entry.split(";"))
        name, eq, token = (part.strip() for part in head.partition("="))
        if not eq or not name or not token:
            wrong.append(f"entry {n} is not name=token")
        elif not _PIPELINE_NAME.fullmatch(name):
            wrong.append(f"entry {n} has a name with characters other than letters, digits, '.', '_', '-' or "
                         "longer than 40")
        elif name in names:
            wrong.append(f"pipeline '{name}' is named twice")
        elif len(token) < MIN_API_TOKEN_LENGTH or any(c.isspace() for c in token):
            wrong.append(f"the token of '{name}' is shorter than {MIN_API_TOKEN_LENGTH} characters or has spaces")
        else:
            names.add(name)
            grant = _grant(name, options, wrong)
            digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
            if digest in tokens:
                wrong.append(f"'{tokens[digest].name}' and '{name}' have the same token")
            elif grant is not None:
                tokens[digest] = grant
    if wrong:
        problems.append(f"RELEASEBOT_API_TOKENS is malformed ({'; '.join(wrong)}); use {API_TOKENS_FORM}")
    return tokens


def _grant(name: str, options: list[str], wrong: list[str]) -> ApiToken | None:
    seen: dict[str, str] = {}
    for option in options:
        key, eq, val = (part.strip() for part in option.partition("="))
        if key not in ("envs", "act_for") or not eq:
            wrong.append(f"'{name}' has an option other than envs=… or act_for=…")
            return None
        if key in seen:
            wrong.append(f"'{name}' sets {key} twice")
            return None
        seen[key] = val
    envs = None
    if "envs" in seen:
        listed = [e.strip() for e in seen["envs"].split("+")]
        if not all(_ENVIRONMENT.fullmatch(e) for e in listed):
            wrong.append(f"'{name}' has envs that are not environment names joined by '+'")
            return None
        envs = frozenset(listed)
    act_for = seen.get("act_for", "self")
    if act_for not in ("people", "self"):
        wrong.append(f"'{name}' has act_for={act_for}; it is people or self")
        return None
    return ApiToken(name, envs, act_for == "people")


def check_api_environments(config: Config, policy: Policy) -> None:
    """A token allowed an environment the policy does not have is a typo that would refuse every deployment."""
    unknown = sorted({f"'{t.name}' names {e}" for t in config.api_tokens.values() for e in (t.environments or ())
                      if e not in policy.environments})
    if unknown:
        raise ConfigError(f"releasebot cannot start: RELEASEBOT_API_TOKENS allows environments the release policy "
                          f"does not have ({'; '.join(unknown)}); the environments are "
                          f"{', '.join(policy.environments)}. Fix the setting and start again.")


def load_policy(path: str, *, required: bool) -> Policy:
    """policy.toml is optional (defaults apply); a path named by RELEASE_POLICY must exist."""
    p = Path(path)
    if not p.exists():
        if required:
            raise ConfigError(f"releasebot cannot start: RELEASE_POLICY names {path}, which does not exist. "
                              "Point it at a policy file or unset it to use policy.toml.")
        return Policy.default()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"releasebot cannot start: {path} is not valid TOML ({exc}). Fix the file and start "
                          "again.") from None
    try:
        return Policy.from_mapping(data, source=str(path))
    except PolicyError as exc:
        raise ConfigError(f"releasebot cannot start: the release policy is invalid: {exc}. Fix the file and "
                          "start again.") from None


def operator() -> str:
    """Who ran a changing command at this terminal, as the audit log names them."""
    import getpass
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except (KeyError, OSError):  # no name for this uid (a container): still on the record as the CLI
        return "cli:operator"
