"""Turning posted fields into lead attributes: pure functions."""
from email_validator import EmailNotValidError, validate_email

# Attributes a form answer may fill on the lead.
PROFILE_FIELDS = ("name", "company", "segment", "intent", "job_title", "phone", "country",
                  "company_size")


def normalize_email(raw: str) -> str:
    """The lead's key. Raises ValueError with a readable message.

    check_deliverability=False: no DNS look-ups on the submit path (and none
    answer on these machines). The whole address is lowercased: mailbox
    providers treat local parts case-insensitively in practice, and a lead
    typed twice with different case is one person. Plus-tags are kept: they
    are separate mailboxes to the person who chose them.
    """
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()


def clean_text(value, max_length: int | None = None) -> str | None:
    """Strip, collapse empty to None; never mangle what a person typed."""
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    if max_length is not None:
        text = text[:max_length]
    return text or None


def merge_profile(current: dict, incoming: dict) -> dict:
    """Progressive profiling: new answers fill blanks, never erase.

    The intent is the exception: it describes what the person wants now, so
    the latest answer wins."""
    updates = {}
    for key in PROFILE_FIELDS:
        value = incoming.get(key)
        if not value:
            continue
        if key == "intent" or not current.get(key):
            if current.get(key) != value:
                updates[key] = value
    return updates
