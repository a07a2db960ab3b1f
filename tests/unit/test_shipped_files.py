"""The files an operator edits or deploys with say what the code does."""
from __future__ import annotations

import tomllib
from pathlib import Path

from commands.policy import Policy

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_policy_file_is_valid_and_equals_the_defaults():
    data = tomllib.loads((ROOT / "policy.toml").read_text())
    shipped, default = Policy.from_mapping(data, source="policy.toml"), Policy.default()
    assert shipped.types == default.types
    assert shipped.environments == default.environments
    assert all(members == () for members in shipped.roles.values())


def test_procfile_migrates_on_release_and_serves_on_web():
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert lines == {"release": "releasebot migrate", "web": "releasebot serve"}


def test_manifest_declares_the_command_interactivity_and_scopes_the_bot_uses():
    text = (ROOT / "manifest.yml").read_text()
    for needed in ("command: /release", "/slack/events", "is_enabled: true", "- commands", "- chat:write",
                   "- usergroups:read", "- users:read", "- channels:read", "- groups:read"):
        assert needed in text


def test_manifest_lists_each_scope_once():
    import re
    scopes = re.findall(r"^\s+- ([a-z_]+:[a-z_.]+)", (ROOT / "manifest.yml").read_text(), re.M)
    assert scopes and len(scopes) == len(set(scopes)), sorted(s for s in scopes if scopes.count(s) > 1)


def test_shipped_policy_spells_out_the_deployment_defaults():
    data = tomllib.loads((ROOT / "policy.toml").read_text())
    shipped, default = Policy.from_mapping(data, source="policy.toml"), Policy.default()
    assert shipped.deployment == default.deployment
    assert data["types"]["emergency"]["approval_sla"] == "30m" and "deployment" in data


def test_shipped_policy_spells_out_the_feed_defaults():
    data = tomllib.loads((ROOT / "policy.toml").read_text())
    shipped, default = Policy.from_mapping(data, source="policy.toml"), Policy.default()
    assert shipped.calendar == default.calendar
    feed = {k: v for k, v in data["calendar"].items() if k != "default_hours"}  # test_slot_order.py checks those
    assert feed == {"feed_refresh": "1h", "feed_keep_cancelled": "30d", "feed_past": "90d", "feed_ahead": "365d"}


def test_shipped_policy_spells_out_the_validation_defaults():
    data = tomllib.loads((ROOT / "policy.toml").read_text())
    shipped, default = Policy.from_mapping(data, source="policy.toml"), Policy.default()
    assert shipped.validation == default.validation
    assert set(data["validation"]) == {"phases", "documents", "controlled_environments", "manual_allowed", "recorders"}
    assert set(data["validation"]["phases"]) == set(data["validation"]["documents"]) == set(data["types"])
