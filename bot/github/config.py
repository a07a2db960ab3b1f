"""The GitHub App's settings. None set: GitHub is off. Some set, or one invalid: start-up stops with one
paragraph naming them (bot.config's style)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GITHUB_API_DEFAULT = "https://api.github.com"
SETTINGS = ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET")
MIN_SECRET = 16


@dataclass(frozen=True)
class GitHubConfig:
    app_id: str
    private_key: str = field(repr=False)  # PEM
    webhook_secret: str = field(repr=False)
    api_url: str = GITHUB_API_DEFAULT  # no trailing slash


def github_config(get: Callable[[str], str], problems: list[str]) -> GitHubConfig | None:
    given = {k: get(k) for k in SETTINGS}
    api_url = (get("GITHUB_API_URL") or GITHUB_API_DEFAULT).rstrip("/")
    if not any(given.values()):
        return None  # GitHub is off (GITHUB_API_URL alone changes nothing)
    missing = [k for k, v in given.items() if not v]
    wrong = []
    if missing:
        wrong.append(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set while "
                     f"{', '.join(k for k in SETTINGS if k not in missing)} {'is' if len(missing) == 2 else 'are'}")
    app_id = given["GITHUB_APP_ID"]
    if app_id and not app_id.isdigit():
        wrong.append("GITHUB_APP_ID must be the App's numeric id (the App's settings page, App ID)")
    key = _private_key(given["GITHUB_APP_PRIVATE_KEY"], wrong) if given["GITHUB_APP_PRIVATE_KEY"] else ""
    secret = given["GITHUB_WEBHOOK_SECRET"]
    if secret and len(secret) < MIN_SECRET:
        wrong.append(f"GITHUB_WEBHOOK_SECRET must be at least {MIN_SECRET} characters (the App's webhook secret)")
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", api_url):
        wrong.append(f"GITHUB_API_URL '{api_url}' is not an http(s) URL")
    if wrong:
        problems.append("the GitHub App is half configured (" + "; ".join(wrong) + "); set GITHUB_APP_ID, "
                        "GITHUB_APP_PRIVATE_KEY (the PEM, or a path to it) and GITHUB_WEBHOOK_SECRET, and "
                        "GITHUB_API_URL for GitHub Enterprise (see README.md, GitHub), or unset them all to "
                        "run without GitHub")
        return None
    return GitHubConfig(app_id, key, secret, api_url)


def _private_key(value: str, wrong: list[str]) -> str:
    pem = value.replace("\\n", "\n")
    if "-----BEGIN" not in pem:
        try:
            pem = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError):
            wrong.append("GITHUB_APP_PRIVATE_KEY is neither a PEM private key nor a readable file holding one")
            return ""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        wrong.append("GITHUB_APP_PRIVATE_KEY is not a readable PEM private key (download it from the App's "
                     "settings page, Private keys)")
        return ""
    if not isinstance(key, rsa.RSAPrivateKey):
        wrong.append("GITHUB_APP_PRIVATE_KEY is not an RSA key; GitHub Apps sign with RS256")
        return ""
    return pem
