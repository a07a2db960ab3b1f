"""The auditor role is read-only: it reads the record and takes the evidence packet, and decides nothing.
A policy that makes it an approver, a deployer or a signer is refused at load, so no policy file can walk
around that. (Everything else that decides names its roles in code, and none of them is `auditor`.)"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from commands.policy import Policy

AUDITOR = "auditor"


def check_read_only(policy: "Policy") -> None:
    from commands.policy import PolicyError
    for name, t in policy.types.items():
        for i, one in enumerate(t.approver_sets or (t.approvers,)):
            if AUDITOR in one:
                where = f"types.{name}.approvers" + (f"[{i}]" if len(t.approver_sets or ()) > 1 else "")
                raise PolicyError(policy.source, f"{where}.{AUDITOR}",
                                  "the auditor role is read-only and cannot approve; name another role")
    d = policy.deployment
    for key, roles in (("deployers", d.deployers), ("signoff_roles", d.signoff_roles),
                       ("closing_role", (d.closing_role,))):
        if AUDITOR in roles:
            raise PolicyError(policy.source, f"deployment.{key}",
                              "the auditor role is read-only and cannot deploy or sign off; name another role")
