"""What the GitHub App shows: the comments and status reports GitHub displays on a waiting deployment
(Markdown, at most 1,024 characters), and the Slack side (the approval message's "GitHub deployment waiting"
and the thread's notes). Pure functions of records and outbox payloads."""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from bot.messages.common import clip, context, esc, mention
from bot.times import iso_times

REPORT_LIMIT = 1024  # GitHub: a status report's comment
MAX_SHOWN = 3  # waiting deployments named in the approval message; the rest are counted
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")  # what makes markup, a link or HTML; "_" inside words does not


def md(text: Any) -> str:
    """User text for GitHub Markdown: no markup, no mentions, no HTML; Slack's time markers as ISO UTC."""
    return _MD_SPECIAL.sub(r"\\\1", iso_times(str(text))).replace("@", "@\u200b")


def _slack_link(payload: Mapping[str, Any]) -> str | None:
    channel, ts = payload.get("channel"), payload.get("ts")
    if channel and ts and re.fullmatch(r"[A-Z0-9]+", str(channel)) and re.fullmatch(r"\d+\.\d+", str(ts)):
        return f"https://slack.com/archives/{channel}/p{str(ts).replace('.', '')}"
    return None


def _release(payload: Mapping[str, Any]) -> str:
    if not payload.get("ref"):
        return "no release"
    text = (f"**{md(payload['ref'])}** ({md(payload.get('service', ''))} {md(payload.get('version', ''))} "
            f"to {md(payload.get('environment', ''))})")
    link = _slack_link(payload)
    return f"{text}, [approval in Slack]({link})" if link else text


def comment(payload: Mapping[str, Any]) -> str:
    """The comment of one callback row: an answer (approved / rejected with every reason) or a report."""
    state = payload.get("state")
    if state == "approved":
        text = (f"releasebot approved this deployment: {_release(payload)} is approved, inside its window, and "
                "the deployer is not one of its approvers.")
    elif state == "rejected":
        reasons = payload.get("reasons") or ["no reason was recorded"]
        head = f"releasebot rejected this deployment ({_release(payload)}):"
        text = head + "".join(f"\n- {md(r)}" for r in reasons)
    else:
        text = f"releasebot: {md(payload.get('report', ''))}. {_release(payload)}."
    return _cut(text, REPORT_LIMIT)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if cut.endswith("\\"):
        cut = cut[:-1]
    return cut + "…"


def callback_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    body = {"environment_name": payload["environment_name"], "comment": comment(payload)}
    if payload.get("state"):
        body["state"] = payload["state"]
    return body


def _run(payload: Mapping[str, Any]) -> str:
    label = f"{esc(payload.get('repo', 'GitHub'))} deployment {esc(payload.get('github_deployment', ''))}"
    url = payload.get("run_url")
    if isinstance(url, str) and url.startswith("https://") and not re.search(r"[\s<>|]", url):
        return f"<{url}|{label}>"
    return label


def _who(payload: Mapping[str, Any]) -> str:
    return f"GitHub user {esc(payload.get('sender', ''))}"


def thread_note(event: str, ref: str, payload: Mapping[str, Any]) -> str:
    env = esc(payload.get("github_environment", ""))
    if event == "github_waiting":
        return (f":hourglass_flowing_sand: *GitHub deployment waiting* on {ref}: {_run(payload)} to {env}, by "
                f"{_who(payload)}, {esc(payload.get('waiting', ''))}. It is released when the vote completes.")
    if payload.get("state") == "approved":
        return f":white_check_mark: GitHub deployment {_run(payload)} to {env} *approved* for {ref}."
    reasons = "".join(f"\n• {esc(r)}" for r in payload.get("reasons") or [])
    return clip(f":no_entry: GitHub deployment {_run(payload)} to {env} *rejected* for {ref}:{reasons}")


def waiting_blocks(requests: Iterable[Any]) -> list[dict]:
    """The approval message's line for deployments GitHub holds until this release's vote completes."""
    requests = list(requests)
    if not requests:
        return []
    lines = []
    for gr in requests[:MAX_SHOWN]:
        payload = {"repo": gr.repo, "github_deployment": gr.deployment_id, "run_url": gr.run_url}
        by = mention(gr.deployer_id) if gr.deployer_id else esc(gr.sender)
        lines.append(f"{_run(payload)} to {esc(gr.environment)}, by {by}")
    more = len(requests) - MAX_SHOWN
    tail = f" and {more} more" if more > 0 else ""
    return [context(":hourglass_flowing_sand: *GitHub deployment waiting*: " + "; ".join(lines) + tail
                    + ". The approval that completes the vote releases it.")]
