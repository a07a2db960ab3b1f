"""The policy's [github] section (issue 14): which repository and GitHub environment deploy which service to
which environment, and which GitHub login is which Slack user. Immutable data, checked at start-up like the
rest of commands.policy.

    [github.repos."acme/payments"]
    service = "payments"
    environments = { production = "production", staging = "staging" }

    [github.users]
    octocat = "U0123ABCD"
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

GITHUB_DEFAULTS: dict[str, Any] = {"repos": {}, "users": {}}
# the policy's environment a deployment must match an approved release in, or be a non-conformance (QMS 6.2)
PRODUCTION = "production"

_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_REPO_KEYS = {"service", "environments"}


@dataclass(frozen=True)
class RepoMapping:
    service: str
    environments: Mapping[str, str]  # GitHub environment -> the policy's environment


@dataclass(frozen=True)
class GithubPolicy:
    repos: Mapping[str, RepoMapping] = field(default_factory=dict)  # "owner/name" (lower case) -> mapping
    users: Mapping[str, str] = field(default_factory=dict)  # GitHub login (lower case) -> Slack user id

    def repo(self, full_name: str) -> RepoMapping | None:
        return self.repos.get(full_name.lower())

    def environment(self, full_name: str, github_env: str) -> tuple[str, str] | None:
        """(service, environment) a deployment of this repository to this GitHub environment is, if mapped."""
        mapping = self.repo(full_name)
        if mapping is None or github_env not in mapping.environments:
            return None
        return mapping.service, mapping.environments[github_env]

    def user(self, login: str) -> str | None:
        return self.users.get(login.lower())


def github_policy(spec: Mapping[str, Any], environments: tuple[str, ...], source: str) -> GithubPolicy:
    from commands.policy import PolicyError  # the one shape of a policy mistake
    repos: dict[str, RepoMapping] = {}
    for name, entry in (spec.get("repos") or {}).items():
        key = f'github.repos."{name}"'
        if not _REPO.fullmatch(name):
            raise PolicyError(source, key, 'must be a repository\'s full name, owner/name, e.g. "acme/payments"')
        if not isinstance(entry, dict):
            raise PolicyError(source, key, 'must be a table: service = "payments", environments = { production = '
                                           '"production" }')
        unknown = sorted(set(entry) - _REPO_KEYS)
        if unknown:
            raise PolicyError(source, f"{key}.{unknown[0]}", "unknown key; a repository takes service and "
                                                             "environments")
        service = entry.get("service")
        if not isinstance(service, str) or not service.strip():
            raise PolicyError(source, f"{key}.service", "must be the service's name, as releases are requested")
        envs = entry.get("environments")
        if not isinstance(envs, dict) or not envs:
            raise PolicyError(source, f"{key}.environments", 'must map GitHub environments to the policy\'s, e.g. '
                                                             '{ production = "production" }')
        for github_env, ours in envs.items():
            if ours not in environments:
                raise PolicyError(source, f"{key}.environments.{github_env}",
                                  f"'{ours}' is not one of release.environments ({', '.join(environments)})")
        if name.lower() in repos:
            raise PolicyError(source, key, "is mapped twice (repository names ignore case)")
        repos[name.lower()] = RepoMapping(service.strip(), MappingProxyType(dict(envs)))
    users: dict[str, str] = {}
    for login, user in (spec.get("users") or {}).items():
        if not _LOGIN.fullmatch(login):
            raise PolicyError(source, f"github.users.{login}", "is not a GitHub login")
        if not isinstance(user, str) or not _USER_ID.fullmatch(user):
            raise PolicyError(source, f"github.users.{login}", "must be a Slack user id (U…/W…)")
        users[login.lower()] = user
    return GithubPolicy(MappingProxyType(repos), MappingProxyType(users))
