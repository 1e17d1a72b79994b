"""The marketer's and the admin's workspace: the review queue and the rules
preview (review.py), campaigns drawn as flows (campaigns.py, flow.py) and
administration (admin.py). The forms page lives in app/dashboard."""
from flask_babel import lazy_gettext

# What each exclusion reason means, for people (the codes stay in the data).
REASON_LABELS = {
    "spam:honeypot": lazy_gettext("Spam: hidden field filled in"),
    "spam:too_fast": lazy_gettext("Spam: sent too fast"),
    "spam:disposable": lazy_gettext("Spam: throwaway address"),
    "spam:links": lazy_gettext("Spam: too many links"),
    "spam:markup_in_identity": lazy_gettext("Spam: markup in name or company"),
    "spam:gibberish": lazy_gettext("Spam: gibberish"),
    "student": lazy_gettext("Student"),
    "competitor": lazy_gettext("Competitor"),
    "internal": lazy_gettext("Colleague (internal)"),
    "no_intent": lazy_gettext("No project"),
    "other_intent": lazy_gettext("Other intent: a person decides"),
}


def reason_label(code: str) -> str:
    return str(REASON_LABELS.get(code, code))


def is_spam(reasons) -> bool:
    return any(str(r).startswith("spam:") for r in reasons or ())
