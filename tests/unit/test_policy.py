"""Policy defaults (QMS-DEV-PRO-004 §3.7, §4.4 step 5), overrides, and every way a policy file can be wrong."""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest

import commands.policy as policy_module
from commands.policy import RELEASE_TYPES, ROLES, Policy, PolicyError

SOURCE = "/etc/releasebot/policy.toml"


def load(data):
    return Policy.from_mapping(data, source=SOURCE)


def refused(data) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load(data)
    err = info.value
    # The message a person reads names the file, the key and the problem.
    assert str(err) == f"{SOURCE}: {err.key}: {err.problem}"
    assert err.source == SOURCE
    assert err.problem
    return err


# --- defaults: QMS §3.7 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rtype, approvers", [
    ("major", {"cab": 2, "release_manager": 1, "security": 1}),        # Full CAB + Release Manager + Security
    ("minor", {"release_manager": 1, "qa_lead": 1}),                   # Release Manager + QA Lead
    ("patch", {"engineering_lead": 1, "qa_lead": 1}),                  # Engineering Lead + QA Lead
    ("security", {"security": 1, "release_manager": 1}),               # Security Engineer + Release Manager
    ("emergency", {"cab": 2, "release_manager": 1, "engineering_lead": 1}),  # the union of the two sets below
    ("infrastructure", {"platform_lead": 1}),                          # Platform Lead (+ Security if network/IAM)
])
def test_default_approvers_match_qms_3_7(rtype, approvers):
    assert dict(Policy.default().type(rtype).approvers) == approvers


def test_emergency_is_approved_by_the_cab_or_a_release_manager_with_an_engineering_lead():
    # QMS 3.7: "Emergency CAB (synchronous) or Release Manager + Engineering Lead if CAB unavailable"
    sets = [dict(s) for s in Policy.default().type("emergency").approver_sets]
    assert sets == [{"cab": 2}, {"release_manager": 1, "engineering_lead": 1}]


@pytest.mark.parametrize("rtype, lead_time", [
    ("major", timedelta(days=14)),      # 2-4 weeks: the minimum
    ("minor", timedelta(days=7)),       # 1-2 weeks
    ("patch", timedelta(days=2)),       # 2-5 days
    ("security", timedelta(hours=4)),   # 4-24 hours
    ("emergency", timedelta(hours=1)),  # 1-4 hours
    ("infrastructure", timedelta(days=3)),  # 3-7 days
])
def test_default_lead_times_are_the_qms_minimum(rtype, lead_time):
    assert Policy.default().type(rtype).lead_time == lead_time


@pytest.mark.parametrize("rtype, stabilisation", [
    ("patch", timedelta(minutes=30)),
    ("minor", timedelta(hours=2)),
    ("major", timedelta(hours=24)),
    ("infrastructure", timedelta(hours=24)),
    ("security", timedelta(minutes=30)),
    ("emergency", timedelta(minutes=30)),  # §4.6: monitor 30 minutes minimum
])
def test_default_stabilisation_windows_match_qms_4_4(rtype, stabilisation):
    assert Policy.default().type(rtype).stabilisation == stabilisation


def test_defaults_define_every_type_and_no_ranks():
    p = Policy.default()
    assert set(p.types) == set(RELEASE_TYPES)
    # A requested type adds its controls to the derived type's; nothing is ordered by rank any more.
    assert not any(hasattr(p.type(t), "rank") for t in RELEASE_TYPES)
    assert not any("rank" in spec for spec in policy_module.DEFAULTS["types"].values())


def test_defaults_have_no_role_members_and_production_as_default_environment():
    p = Policy.default()
    assert p.source == "built-in defaults"
    assert set(p.roles) == set(ROLES)
    assert all(members == () for members in p.roles.values())
    assert p.default_environment == "production"
    assert p.environments == ("production", "staging", "qa", "development")
    assert p.role_members("cab") == ()


def test_policy_is_immutable():
    p = Policy.default()
    with pytest.raises(TypeError):
        p.types["major"] = p.types["minor"]  # type: ignore[index]
    with pytest.raises(TypeError):
        p.type("major").approvers["cab"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        p.roles["cab"] = ("U0X",)  # type: ignore[index]


def test_changing_one_policy_cannot_change_the_builtin_defaults():
    """Policy is 'immutable data': nothing reachable from one policy object may alter
    what the next Policy.default() returns."""
    saved = copy.deepcopy(policy_module.DEFAULTS)
    try:
        p = Policy.default()
        try:
            p.raw["types"]["major"]["approvers"]["cab"] = 9
        except TypeError:
            pass  # read-only: fine
        try:
            p.raw["release"]["environments"].append("moon")
        except (TypeError, AttributeError):
            pass
        fresh = Policy.default()
        assert fresh.type("major").approvers["cab"] == 2
        assert "moon" not in fresh.environments
    finally:
        policy_module.DEFAULTS.clear()
        policy_module.DEFAULTS.update(saved)


# --- overrides ---------------------------------------------------------------------------------------------------

def test_partial_override_keeps_every_other_default():
    p = load({"types": {"minor": {"lead_time": "10d"}}})
    minor = p.type("minor")
    assert minor.lead_time == timedelta(days=10)
    assert minor.stabilisation == timedelta(hours=2)
    assert dict(minor.approvers) == {"release_manager": 1, "qa_lead": 1}
    d = Policy.default()
    for name in RELEASE_TYPES:
        if name != "minor":
            assert p.type(name) == d.type(name)
    assert p.default_environment == "production"
    assert p.source == SOURCE


def test_override_of_roles_keeps_other_roles_empty():
    p = load({"roles": {"cab": ["U0CAB1", "S0CABGROUP"], "release_manager": ["W0RM"]}})
    assert p.role_members("cab") == ("U0CAB1", "S0CABGROUP")
    assert p.role_members("release_manager") == ("W0RM",)
    assert p.role_members("qa_lead") == ()


def test_approvers_table_replaces_the_default_set_wholesale():
    p = load({"types": {"major": {"approvers": {"cab": 3}}}})
    assert dict(p.type("major").approvers) == {"cab": 3}
    # A team without a security engineer can drop the role entirely.
    p = load({"types": {"minor": {"approvers": {"engineering_lead": 1}}}})
    assert dict(p.type("minor").approvers) == {"engineering_lead": 1}
    assert p.type("minor").lead_time == timedelta(days=7)


def test_release_section_override():
    p = load({"release": {"environments": ["prod", "stage"], "default_environment": "stage"}})
    assert p.environments == ("prod", "stage")
    assert p.default_environment == "stage"


def test_from_mapping_does_not_modify_its_input():
    data = {"types": {"minor": {"lead_time": "10d"}}, "roles": {"cab": ["U0CAB1"]}}
    snapshot = copy.deepcopy(data)
    load(data)
    assert data == snapshot
    assert Policy.default().type("minor").lead_time == timedelta(days=7)


# --- every invalid case names file, key and problem --------------------------------------------------------------

def test_unknown_section():
    err = refused({"approvals": {}})
    assert err.key == "approvals"
    assert "unknown section" in err.problem and "types" in err.problem


def test_section_that_is_not_a_table():
    err = refused({"types": "major"})
    assert err.key == "types"
    assert "table" in err.problem


def test_unknown_release_type():
    err = refused({"types": {"hotfix": {"lead_time": "1h"}}})
    assert err.key == "types.hotfix"
    assert "unknown release type" in err.problem and "emergency" in err.problem


def test_unknown_key_in_a_type():
    err = refused({"types": {"minor": {"leadtime": "7d"}}})
    assert err.key == "types.minor.leadtime"
    assert "unknown key" in err.problem and "lead_time" in err.problem


def test_unknown_key_in_release_section():
    err = refused({"release": {"default_env": "production"}})
    assert err.key == "release.default_env"
    assert "unknown key" in err.problem


@pytest.mark.parametrize("dkey", ["lead_time", "stabilisation"])
@pytest.mark.parametrize("value", ["soon", "0m", "", "-3h", "1.5h"])
def test_bad_duration(dkey, value):
    err = refused({"types": {"patch": {dkey: value}}})
    assert err.key == f"types.patch.{dkey}"
    assert value in err.problem or "duration" in err.problem


@pytest.mark.parametrize("value", [30, None, ["2h"]])
def test_duration_that_is_not_a_string(value):
    err = refused({"types": {"minor": {"stabilisation": value}}})
    assert err.key == "types.minor.stabilisation"
    assert "duration" in err.problem


@pytest.mark.parametrize("value", ["²", "99999999999999d"])
def test_odd_duration_is_a_policy_error_not_a_crash(value):
    err = refused({"types": {"minor": {"lead_time": value}}})
    assert err.key == "types.minor.lead_time"


@pytest.mark.parametrize("count", [0, -1, True, "2", 1.5, None])
def test_bad_approver_count(count):
    err = refused({"types": {"major": {"approvers": {"cab": count}}}})
    assert err.key == "types.major.approvers.cab"
    assert "whole number" in err.problem


def test_empty_approvers_table():
    err = refused({"types": {"major": {"approvers": {}}}})
    assert err.key == "types.major.approvers"


def test_approvers_that_is_not_a_table():
    err = refused({"types": {"major": {"approvers": "cab"}}})
    assert err.key == "types.major.approvers"


def test_an_approver_set_in_a_list_that_is_not_a_table():
    err = refused({"types": {"major": {"approvers": ["cab"]}}})
    assert err.key == "types.major.approvers[0]"


def test_unknown_role_in_approvers():
    err = refused({"types": {"major": {"approvers": {"cab": 2, "wizard": 1}}}})
    assert err.key == "types.major.approvers.wizard"
    assert "unknown role" in err.problem and "release_manager" in err.problem


def test_unknown_role_in_roles():
    err = refused({"roles": {"wizard": ["U0WIZ"]}})
    assert err.key == "roles.wizard"
    assert "unknown role" in err.problem


@pytest.mark.parametrize("rank", [1, 10, "high"])
def test_a_policy_that_still_sets_rank_is_told_ranks_are_gone(rank):
    err = refused({"types": {"minor": {"rank": rank}}})
    assert err.key == "types.minor.rank"
    assert "ranks are gone" in err.problem and "union" in err.problem


@pytest.mark.parametrize("member", ["bob", "u0abc", "C0CHANNEL", "U0", "@U0RM", "<@U0RM>", "U0RM "])
def test_bad_slack_id(member):
    err = refused({"roles": {"cab": ["U0CAB1", member]}})
    assert err.key == "roles.cab"
    assert member in err.problem and "Slack" in err.problem


@pytest.mark.parametrize("members", ["U0CAB1", [1, 2], {"U0CAB1": True}])
def test_role_members_must_be_a_list_of_strings(members):
    err = refused({"roles": {"cab": members}})
    assert err.key == "roles.cab"
    assert "list" in err.problem


@pytest.mark.parametrize("member", ["U0ABC", "W0ABC", "S0GROUP", "U012ABCDEF"])
def test_good_slack_ids_are_accepted(member):
    assert load({"roles": {"cab": [member]}}).role_members("cab") == (member,)


def test_default_environment_not_in_environments():
    err = refused({"release": {"default_environment": "prod"}})
    assert err.key == "release.default_environment"
    assert "'prod'" in err.problem and "release.environments" in err.problem


def test_narrowing_environments_without_moving_the_default_is_refused():
    err = refused({"release": {"environments": ["staging"]}})
    assert err.key == "release.default_environment"


@pytest.mark.parametrize("envs", [[], "production", ["production", ""], ["production", 3]])
def test_bad_environments(envs):
    err = refused({"release": {"environments": envs}})
    assert err.key == "release.environments"


def test_deployers_default_to_operations_and_platform_leads_qms_3_4():
    assert Policy.default().deployment.deployers == ("operations", "platform_lead")
    assert Policy.from_mapping({"deployment": {"deployers": ["operations"]}}).deployment.deployers == ("operations",)


@pytest.mark.parametrize("value", [[], ["devops"], "operations", [1]])
def test_deployers_must_be_known_roles(value):
    err = refused({"deployment": {"deployers": value}})
    assert err.key == "deployment.deployers" and "non-empty list of roles" in err.problem


def test_feed_refresh_and_cancelled_blackouts_default_to_an_hour_and_thirty_days():
    cal = Policy.default().calendar
    assert (cal.feed_refresh, cal.feed_keep_cancelled) == (timedelta(hours=1), timedelta(days=30))
    cal = load({"calendar": {"feed_refresh": "4h", "feed_keep_cancelled": "7d"}}).calendar
    assert (cal.feed_refresh, cal.feed_keep_cancelled) == (timedelta(hours=4), timedelta(days=7))
    assert cal.max_concurrent == {"production": 1}  # the other calendar keys keep their defaults


def test_the_feed_horizon_defaults_to_ninety_days_back_and_a_year_ahead():
    cal = Policy.default().calendar
    assert (cal.feed_past, cal.feed_ahead) == (timedelta(days=90), timedelta(days=365))
    cal = load({"calendar": {"feed_past": "30d", "feed_ahead": "60d"}}).calendar
    assert (cal.feed_past, cal.feed_ahead) == (timedelta(days=30), timedelta(days=60))


@pytest.mark.parametrize("key, value, problem", [
    ("feed_refresh", "5m", "must be from 15m to 7d"), ("feed_refresh", "8d", "must be from 15m to 7d"),
    ("feed_refresh", "soon", "is not a duration"), ("feed_keep_cancelled", "12h", "must be from 1d to 365d"),
    ("feed_keep_cancelled", "400d", "must be from 1d to 365d"), ("feed_keep_cancelled", 30, "duration string"),
    ("feed_past", "12h", "must be from 1d to 730d"), ("feed_past", "800d", "must be from 1d to 730d"),
    ("feed_ahead", "3d", "must be from 7d to 730d"), ("feed_ahead", "731d", "must be from 7d to 730d")])
def test_feed_keys_out_of_bounds_are_refused(key, value, problem):
    err = refused({"calendar": {key: value}})
    assert err.key == f"calendar.{key}" and problem in err.problem
