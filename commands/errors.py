"""Errors that carry a sentence a person can act on."""
from __future__ import annotations


class InputError(ValueError):
    """The input is malformed. Nothing was written.

    `field` names the offending field so a modal can show the error inline.
    """

    def __init__(self, message: str, field: str | None = None, form: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.form = form


class FieldErrors(InputError):
    """Several fields are wrong at once (a modal submission)."""

    def __init__(self, errors: dict[str, str]):
        first = next(iter(errors.items()))
        super().__init__(f"{first[0]}: {first[1]}", field=first[0])
        self.errors = errors


class NotFound(InputError):
    pass


def required_reason(text: str | None, message: str, form: str) -> str:
    """A written reason, stripped; refusing an empty one before anything is written."""
    text = (text or "").strip()
    if not text:
        raise InputError(message, field="reason", form=form)
    return text


class Refused(Exception):
    """A rule said no. The refusal itself is audited (commands.decision)."""

    def __init__(self, message: str, code: str, roles: tuple[str, ...] = ()):
        super().__init__(message)
        self.message, self.code = message, code
        # the roles whose absence this refusal is about: the bot says who does hold them
        self.roles = tuple(roles)


class CouldNotCheck(InputError):
    """A rule could not be checked just now (Slack did not answer a role lookup).

    Not a refusal: nothing is written and nothing is audited, and trying again
    will work. It is an InputError so every listener already tells the person."""
