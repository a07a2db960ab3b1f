"""Calendar feed tokens are HMACs under a server secret that nobody outside can compute."""
from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace

from bot.feed import token_for, valid


def _svc(**config):
    base = {"feed_secret": None, "signing_secret": "", "app_token": None}
    return SimpleNamespace(config=SimpleNamespace(**{**base, **config}))


def test_socket_mode_without_a_signing_secret_does_not_derive_feed_tokens_from_an_empty_key():
    svc = _svc(app_token="xapp-1-A0-secret-app-token")
    # What anyone could compute if the key were derived from the empty signing secret.
    guessable_key = hashlib.sha256(b"feed:").digest()
    forged = "U0DEV." + hmac.new(guessable_key, b"calendar-feed:U0DEV", hashlib.sha256).hexdigest()[:32]
    assert not valid(svc, forged)
    assert valid(svc, token_for(svc, "U0DEV"))


def test_feed_tokens_change_with_the_secret_and_the_person():
    a, b = _svc(signing_secret="one"), _svc(signing_secret="two")
    assert token_for(a, "U1") != token_for(b, "U1")
    assert token_for(a, "U1") != token_for(a, "U2")
    assert not valid(a, token_for(b, "U1"))
    assert valid(_svc(feed_secret="explicit", signing_secret="one"), token_for(_svc(feed_secret="explicit"), "U1"))
