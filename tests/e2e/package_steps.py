"""The release package as people and pipelines give it in the end-to-end tests (QMS 4.3, 4.4): passing results of
the phases the type needs, recorded with `/release test` (UAT by the product owner), and the documents with
`/release edit`; and the deploy form's artefact, commit and justification."""
from __future__ import annotations

from commands.validation_policy import VALIDATION_DEFAULTS

ARTIFACT, COMMIT = "payments:2.3.1", "3f2a9c1"
JUSTIFICATION = "the deploy pipeline is down (INC-77)"


def phases_for(*types: str) -> list[str]:
    return list(dict.fromkeys(p for t in types for p in VALIDATION_DEFAULTS["phases"][t]))


def ready(bot, rid: int = 1, *types: str, artifact: str = ARTIFACT, recorder: str = "U0QA",
          requester: str = "U0DEV", docs: bool = True) -> None:
    """`types`: the release's applied types (default minor)."""
    types = types or ("minor",)
    for phase in phases_for(*types):
        bot.command(f"test REL-{rid} phase={phase} status=passed url=https://ci.test/{phase} artifact={artifact}",
                    user="U0PO" if phase == "uat" else recorder)
    needed = {d for t in types for d in VALIDATION_DEFAULTS["documents"][t]}
    if docs and needed:
        line = f"edit REL-{rid} notes=https://wiki.test/notes runbook=https://wiki.test/runbook"
        if "rollback_plan" in needed:
            line += ' rollback="redeploy the previous artefact"'
        bot.command(line, user=requester)


def form_values(artifact: str | None = ARTIFACT, commit: str | None = COMMIT,
                justification: str | None = JUSTIFICATION) -> dict:
    """The deploy form's provenance inputs, as a view_submission's state carries them."""
    return {key: {key: {"type": "plain_text_input", "value": value}}
            for key, value in (("artifact", artifact), ("commit", commit), ("justification", justification))
            if value is not None}
