"""The GitHub App's pieces that need no server: its settings, the policy mapping, which URLs it may call,
which release a deployment names, and what it shows (within GitHub's and Slack's limits, escaped)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from slack_sdk.models.blocks import Block

from bot.config import ConfigError, load_config
from bot.github.client import under
from bot.github.messages import REPORT_LIMIT, callback_body, comment, md, thread_note, waiting_blocks
from commands.github_gate import provenance_of, version_hints
from commands.policy import Policy, PolicyError
from commands.text import when

from github_emulator import new_key

BASE = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s", "RELEASE_CHANNEL": "C0RELEASES"}
PRIVATE, PUBLIC = new_key()
GOOD = {"GITHUB_APP_ID": "12345", "GITHUB_APP_PRIVATE_KEY": PRIVATE, "GITHUB_WEBHOOK_SECRET": "x" * 20}


def test_without_any_github_setting_github_is_off():
    assert load_config(BASE).github is None
    assert load_config({**BASE, "GITHUB_API_URL": "https://ghe.example/api/v3"}).github is None


def test_a_complete_setting_is_loaded_and_the_key_may_be_a_path(tmp_path):
    cfg = load_config({**BASE, **GOOD}).github
    assert (cfg.app_id, cfg.api_url) == ("12345", "https://api.github.com")
    path = tmp_path / "app.pem"
    path.write_text(PRIVATE)
    cfg = load_config({**BASE, **GOOD, "GITHUB_APP_PRIVATE_KEY": str(path),
                       "GITHUB_API_URL": "https://ghe.example/api/v3/"}).github
    assert cfg.private_key == PRIVATE and cfg.api_url == "https://ghe.example/api/v3"
    assert "PRIVATE KEY" not in repr(cfg) and "x" * 20 not in repr(cfg)


@pytest.mark.parametrize("change, named", [
    ({"GITHUB_WEBHOOK_SECRET": ""}, "GITHUB_WEBHOOK_SECRET is not set"),
    ({"GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": ""}, "GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY are not set"),
    ({"GITHUB_APP_ID": "my-app"}, "GITHUB_APP_ID must be the App's numeric id"),
    ({"GITHUB_APP_PRIVATE_KEY": "/nowhere/app.pem"}, "neither a PEM private key nor a readable file"),
    ({"GITHUB_APP_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"},
     "not a readable PEM private key"),
    ({"GITHUB_WEBHOOK_SECRET": "short"}, "at least 16 characters"),
    ({"GITHUB_API_URL": "ftp://github"}, "GITHUB_API_URL 'ftp://github' is not an http(s) URL"),
])
def test_a_half_or_wrong_github_setting_stops_start_up_naming_it(change, named):
    with pytest.raises(ConfigError) as err:
        load_config({**BASE, **GOOD, **change})
    message = str(err.value)
    assert message.startswith("releasebot cannot start:") and named in message
    assert "\n" not in message and PRIVATE[40:80] not in message


def policy(github: dict) -> Policy:
    return Policy.from_mapping({"github": github})


def test_the_policy_maps_repositories_environments_and_users_ignoring_case():
    p = policy({"repos": {"Acme/Payments": {"service": "payments", "environments": {"prod": "production"}}},
                "users": {"OctoCat": "U0123ABCD"}})
    assert p.github.environment("acme/payments", "prod") == ("payments", "production")
    assert p.github.environment("acme/payments", "staging") is None and p.github.environment("acme/x", "prod") is None
    assert p.github.user("octocat") == "U0123ABCD" and p.github.user("someone") is None
    assert Policy.default().github.repos == {}


@pytest.mark.parametrize("github, key", [
    ({"repos": {"payments": {"service": "payments", "environments": {"p": "production"}}}}, 'github.repos."payments"'),
    ({"repos": {"a/b": {"service": "payments", "environments": {"p": "prod"}}}}, 'github.repos."a/b".environments.p'),
    ({"repos": {"a/b": {"service": "payments"}}}, 'github.repos."a/b".environments'),
    ({"repos": {"a/b": {"service": "", "environments": {"p": "production"}}}}, 'github.repos."a/b".service'),
    ({"repos": {"a/b": {"service": "x", "environments": {"p": "production"}, "team": "y"}}}, 'github.repos."a/b".team'),
    ({"users": {"octocat": "octocat@example.com"}}, "github.users.octocat"),
    ({"users": {"not a login": "U0123ABCD"}}, "github.users.not a login"),
    ({"teams": {}}, "github.teams"),
])
def test_a_wrong_github_section_is_a_policy_error_naming_its_key(github, key):
    with pytest.raises(PolicyError) as err:
        policy(github)
    assert err.value.key == key


@pytest.mark.parametrize("url, ok", [
    ("https://api.github.com/repos/a/b/actions/runs/1/deployment_protection_rule", True),
    ("https://API.github.com/app/installations/1/access_tokens", True),
    ("https://api.github.com.evil.example/repos/a/b", False),
    ("http://api.github.com/repos/a/b", False),
    ("https://user:pw@api.github.com/repos/a/b", False),
    ("https://api.github.com:444/repos/a/b", False),
    ("https://evil.example/https://api.github.com/", False),
    ("not a url", False),
])
def test_only_urls_under_the_api_are_called(url, ok):
    assert under("https://api.github.com", url) is ok


def test_a_path_below_an_enterprise_api_must_stay_inside_it():
    assert under("https://ghe.example/api/v3", "https://ghe.example/api/v3/repos/a/b")
    assert not under("https://ghe.example/api/v3", "https://ghe.example/api/v3-evil/repos/a/b")
    assert not under("https://ghe.example/api/v3", "https://ghe.example/api/v3/../../admin")
    assert not under("https://ghe.example/api/v3", "https://ghe.example/other")


def test_the_version_comes_from_the_payload_the_artifact_or_a_tag():
    assert version_hints({"version": "2.3.1"}, "main", "payments") == ["2.3.1"]
    assert version_hints({"artifact": "payments:2.3.1"}, None, "payments") == ["2.3.1"]
    assert version_hints({}, "refs/tags/v2.3.1", "payments") == ["2.3.1", "v2.3.1"]
    assert version_hints({}, "main", "payments") == []


def test_the_gate_is_given_the_deployments_sha_and_the_artefact_of_its_payload_or_tag():
    p = provenance_of({"artifact": "payments:2.3.1", "version": "2.3.0"}, "refs/tags/v2.3.1", "a1b2c3")
    assert (p.artifact, p.commit, p.justification, p.known) == ("payments:2.3.1", "a1b2c3", None, True)
    assert provenance_of({"version": "2.3.1"}, "main", "a1b2c3").artifact == "2.3.1"
    assert provenance_of({}, "refs/tags/v2.3.1", None).artifact == "2.3.1"
    # a branch names no artefact and no sha no commit: the production gate refuses them, nothing is made up
    assert (provenance_of({"artifact": " "}, "main", "").artifact, provenance_of({}, "main", "").commit) == (None, None)


def test_comments_stay_within_githubs_limit_and_echo_no_markup():
    reasons = [f"reason {n}: " + "<script>@team [x](https://evil) " * 20 for n in range(20)]
    body = callback_body({"environment_name": "production", "state": "rejected", "reasons": reasons, "ref": "REL-1",
                          "service": "payments", "version": "2.3.1", "environment": "production"})
    assert body["state"] == "rejected" and len(body["comment"]) <= REPORT_LIMIT
    # every <, > and ] of the reasons is escaped (no HTML, no link), and no @mention reaches anyone
    assert not re.search(r"(?<!\\)[<>]|(?<!\\)\]\(", body["comment"]) and "@team" not in body["comment"]
    report = callback_body({"environment_name": "production", "report": "waiting " * 400})
    assert "state" not in report and len(report["comment"]) <= REPORT_LIMIT
    assert md("<!date^1766000000^{date}|x> `a`") == "\\<!date^1766000000^{date}\\|x\\> \\`a\\`"
    # the times commands/ marks read as ISO 8601 UTC on GitHub
    assert md(f"opens at {when(datetime(2026, 12, 15, 10, 0, tzinfo=timezone.utc))}") == "opens at 2026-12-15T10:00:00Z"
    assert "approved this deployment" in comment({"state": "approved", "ref": "REL-3", "channel": "C0X",
                                                  "ts": "1700000000.000100"})


def test_the_slack_side_escapes_githubs_text_and_keeps_within_slacks_limits():
    hostile = "<!channel> & <https://evil|click>"
    note = thread_note("github_waiting", "REL-1", {"repo": hostile, "github_deployment": 7, "sender": hostile,
                                                   "github_environment": hostile, "waiting": hostile,
                                                   "run_url": "https://github.com/a/b/actions/runs/1|x"})
    assert "<!channel>" not in note and "|click>" not in note and "https://github.com/a/b/actions/runs/1|x" not in note
    requests = [SimpleNamespace(repo=hostile * 20, deployment_id=n, run_url="https://github.com/a/b/actions/runs/1",
                                deployer_id=None, sender=hostile, environment=hostile * 5) for n in range(40)]
    (block,) = waiting_blocks(requests)
    Block.parse(block).to_dict()  # slack_sdk validates the lengths
    text = block["elements"][0]["text"]
    assert "GitHub deployment waiting" in text and "<!channel>" not in text
    assert waiting_blocks([]) == []


# ---- the client against the GitHub emulator ----------------------------------------------------------

@pytest.fixture
def gh():
    from github_emulator import GitHubEmulator
    emu = GitHubEmulator(public_key=PUBLIC).start()
    yield emu
    emu.stop()


def app_for(emu, private=None, app_id="424242"):
    from bot.github.client import GitHubApp
    from bot.github.config import GitHubConfig
    return GitHubApp(GitHubConfig(app_id, private or PRIVATE, "x" * 20, emu.api_url))




def test_the_installation_token_is_cached_and_the_jwt_checks_out(gh):
    app = app_for(gh)
    url = gh.callback_url("acme/payments", 1)
    app.call("POST", url, 77, {"environment_name": "production", "comment": "report"})
    app.call("POST", url, 77, {"environment_name": "production", "comment": "report"})
    assert len(gh.calls_to("token")) == 1 and gh.jwt_problems == [] and gh.reports == {1: 2}


def test_a_jwt_from_another_key_or_app_is_refused_by_the_emulator_and_retried_not_dropped(gh):
    from bot.delivery import RetryLater
    other, _ = new_key()
    for app in (app_for(gh, private=other), app_for(gh, app_id="1")):
        with pytest.raises(RetryLater):
            app.installation_token(77)
    assert len(gh.jwt_problems) == 2 and "Signature" in gh.jwt_problems[0] and "iss" in gh.jwt_problems[1]


def test_retry_after_is_kept_a_403_without_it_is_permanent_and_nothing_outside_the_api_is_called(gh):
    from bot.delivery import DeadLetter, RetryLater
    from bot.github.client import OutsideApi
    app = app_for(gh)
    app.installation_token(77)
    url = gh.callback_url("acme/payments", 2)
    gh.fail_next(1, status=403, retry_after=120)
    with pytest.raises(RetryLater) as later:
        app.call("POST", url, 77, {"environment_name": "production", "comment": "x"})
    assert later.value.delay == 120
    gh.fail_next(1, status=403)
    with pytest.raises(DeadLetter):
        app.call("POST", url, 77, {"environment_name": "production", "comment": "x"})
    before = len(gh.calls)
    with pytest.raises(OutsideApi):
        app.call("POST", "https://evil.example/repos/a/b/actions/runs/2/deployment_protection_rule", 77, {})
    assert len(gh.calls) == before
