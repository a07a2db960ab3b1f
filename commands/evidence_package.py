"""The release package in the evidence packet: the test phases and documents judged against what the
deployment gate requires for the release's type (commands.validation.required_phases/required_documents),
so the packet marks missing exactly what the gate would have asked for, no more and no less.

Without a policy (a caller that has none) nothing is taken as not required: every document absent is
missing and every phase is shown as recorded, which can only over-report, never hide a gap."""
from __future__ import annotations

from typing import Any, Callable

from commands.validation import DOC_LABELS, required_documents, required_phases

PRESENT, MISSING, EXCEPTION = "present", "missing", "exception"


class Requirements:
    def __init__(self, rec: Any, policy: Any | None) -> None:
        r = rec.release
        self.known = policy is not None
        self.phases = tuple(required_phases(policy, r)) if policy is not None else ()
        self.documents = tuple(required_documents(policy, r)) if policy is not None else ()
        self.type = r.effective_type
        self.waivers = {w.item: w for w in rec.waivers}
        self.artifact = rec.deployment.artifact if rec.deployment is not None else None
        # a waived document that is absent is that document's own item (document()); listing its waiver
        # again among the test evidence would count one exception twice
        self.shown = {f"document:{c}" for c in DOC_LABELS if not str(getattr(r, c, None) or "").strip()}


def _opened(req: Requirements, needed: bool) -> str:
    return f" (required for a {req.type} release: the gate opened on this exception)" if needed and req.known else ""


def document(make: Callable[..., Any], iso: Callable, req: Requirements, label: str, column: str,
             value: str | None) -> Any:
    """One document of the package, in the section it answers."""
    if value and str(value).strip():
        return make(label, PRESENT, str(value))
    waiver = req.waivers.get(f"document:{column}")
    if waiver is not None:
        return make(label, EXCEPTION, f"not given; the {DOC_LABELS.get(column, column)} was waived by {waiver.by} "
                                      f"at {iso(waiver.at)}: {waiver.reason}{_opened(req, column in req.documents)}",
                    "waiver")
    if req.known and column not in req.documents:
        return make(label, PRESENT, f"none; not required for a {req.type} release by the policy in force")
    required = f"required for a {req.type} release (QMS 4.4); " if req.known else ""
    return make(label, MISSING, f"{required}not recorded")


def phases(make: Callable[..., Any], iso: Callable, req: Requirements, results: list) -> list:
    """Test evidence: each required phase (passed for the deployed artefact, waived, or missing), then any
    other phase with a result on the record. Waivers of phases are exceptions, listed where the phase is."""
    latest: dict[str, Any] = {}
    for t in results:  # oldest first: the last one per phase counts, as at the gate
        if req.artifact is None or t.artifact in (None, req.artifact):
            latest[t.phase] = t
    items = []
    for phase in [*req.phases, *(p for p in latest if p not in req.phases)]:
        t, needed = latest.get(phase), phase in req.phases
        why = f"required for a {req.type} release (QMS 4.3); " if needed else ""
        if t is not None:
            where = f" ({t.url})" if t.url else ""
            line = (f"{t.status} at {iso(t.at)}, reported by {t.reported_by}{where}" +
                    (f" for {t.artifact}" if t.artifact else "") + (f": {t.summary}" if t.summary else ""))
            if t.status == "passed":
                items.append(make(f"Test evidence: {phase}", PRESENT, why + line))
                continue
        if f"phase:{phase}" in req.waivers:
            continue  # the waiver below is this phase's item
        if t is not None:
            items.append(make(f"Test evidence: {phase}", MISSING, f"{why}the latest result {line}"))
        else:
            on = f" for {req.artifact}" if req.artifact else ""
            items.append(make(f"Test evidence: {phase}", MISSING, f"{why}no passing result recorded{on}"))
    for item, w in req.waivers.items():
        if item in req.shown:
            continue
        name = item.partition(":")[2]
        needed = (name in req.phases) if item.startswith("phase:") else (name in req.documents)
        items.append(make(f"Waiver: {item}", EXCEPTION, f"by {w.by} at {iso(w.at)}: {w.reason}{_opened(req, needed)}",
                          "waiver"))
    return items
