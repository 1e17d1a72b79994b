"""The submit path's shell: keep the submission, judge it, turn it into a lead.

The submission row is committed before anything else happens, so nothing a
person sends is lost even if judging or the lead update fails afterwards
(`leadflow submissions retry` picks up rows left pending).
"""
import hashlib
import hmac
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import tasks
from ..db import session
from ..leads import change_stage, get_or_create_lead
from ..models import FormRecord, StageChange, Submission, utcnow
from ..qualify.lifecycle import NURTURABLE
from ..qualify.profile import clean_text, merge_profile, normalize_email
from ..qualify.rules import Rules, Verdict, judge
from .forms import UTM_FIELDS, Form

JUDGED_FIELDS = ("name", "company", "email", "segment", "intent", "job_title", "message")


@dataclass(frozen=True)
class RequestMeta:
    ip: str | None = None
    user_agent: str | None = None
    referrer: str | None = None
    fill_ms: int | None = None
    honeypot: str | None = None
    utm: dict | None = None


MAX_DEPTH = 32  # a submission is {"fields": {name: value}}: depth 2


class TooDeep(ValueError):
    pass


def storable(value, depth: int = 0):
    """What was posted, made storable in any database: PostgreSQL's text and
    JSONB refuse NUL characters, lone UTF-16 surrogates (JSON may carry
    "\\ud800") and NaN/Infinity (Python's json reads them). NULs are dropped,
    lone surrogates become U+FFFD, non-finite numbers their JSON spelling.
    Raises TooDeep past MAX_DEPTH levels of nesting."""
    if isinstance(value, str):
        if value.isascii():
            return value.replace("\x00", "")
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [storable(item, depth + 1) for item in value]
        return {storable(key) if isinstance(key, str) else key: storable(item, depth + 1)
                for key, item in value.items()}
    return value


def hash_ip(ip: str | None, secret: str) -> str | None:
    """Keyed hash: lets us count posts per address without keeping it."""
    if not ip:
        return None
    return hmac.new(secret.encode(), ip.encode(), hashlib.sha256).hexdigest()


def store_submission(form_slug: str, channel: str, payload: dict, meta: RequestMeta,
                     secret: str) -> Submission:
    """Write and commit the submission as received. First thing, always."""
    email = payload.get("email") if isinstance(payload.get("email"), str) else None
    utm = meta.utm or {}
    submission = Submission(
        form_slug=form_slug, channel=channel, payload=payload, verdict="pending", reasons=[],
        email=clean_text(email, 320), ip_hash=hash_ip(meta.ip, secret),
        user_agent=clean_text(meta.user_agent, 1000), referrer=clean_text(meta.referrer, 2000),
        fill_ms=meta.fill_ms, created_at=utcnow(),
        **{name: clean_text(utm.get(name), 200) for name in UTM_FIELDS},
    )
    session.add(submission)
    session.commit()
    return submission


def mark_invalid(submission: Submission, errors: dict) -> None:
    submission.verdict, submission.errors = "invalid", errors
    session.commit()


def judge_fields(form: Form | None, fields: dict, meta: dict, rules: Rules) -> Verdict:
    """The one verdict function, shared by the web path and `leadflow verdicts`."""
    cleaned = {name: clean_text(fields.get(name)) if isinstance(fields.get(name), (str, type(None)))
               else clean_text(str(fields.get(name))) for name in JUDGED_FIELDS}
    return judge(cleaned, meta, rules,
                 form.intent_dispositions if form else {},
                 form.definition.min_fill_ms if form else None)


def decide(submission: Submission, form: Form, fields: dict, meta: RequestMeta,
           rules: Rules, actor: str = "rule:capture") -> Verdict:
    """Judge a stored submission and apply the verdict, in one transaction."""
    verdict = judge_fields(form, fields, {"elapsed_ms": meta.fill_ms, "honeypot": meta.honeypot},
                           rules)
    submission.verdict, submission.reasons = verdict.verdict, list(verdict.reasons)
    submission.decided_at, submission.decided_by = utcnow(), actor
    if verdict.verdict == "accepted" or (
            verdict.verdict == "excluded" and not any(r.startswith("spam:") for r in verdict.reasons)):
        apply_to_lead(submission, form, fields, verdict, actor)
    tasks.commit()
    return verdict


def lead_attributes(form: Form, fields: dict) -> dict:
    return {name: clean_text(fields.get(name), field.max_length)
            for name in ("name", "company", "segment", "intent", "job_title", "phone",
                         "country", "company_size")
            if (field := form.field(name)) is not None}


def apply_to_lead(submission: Submission, form: Form, fields: dict, verdict: Verdict,
                  actor: str) -> None:
    """Accepted: upsert the lead and record form_submitted. Excluded (not
    spam): keep the lead as disqualified with the reason, so a marketer can
    override it later."""
    email = normalize_email(fields["email"])
    attributes = lead_attributes(form, fields)
    accepted = verdict.verdict == "accepted"
    target = "lead" if accepted else "disqualified"
    reason = None if accepted else ", ".join(verdict.reasons)
    lead, created = get_or_create_lead(email, {
        **attributes, "stage": target, "stage_reason": reason, "language": form.definition.language,
        "consent": _consented(fields), "first_form": form.slug,
        "source": submission.utm_source, "medium": submission.utm_medium,
        "referrer_domain": _domain(submission.referrer),
        "pain_point": clean_text(fields.get("message"), 5000),
    })
    submission.lead_id = lead.id
    if created:
        session.add(StageChange(lead_id=lead.id, from_stage=None, to_stage=target, actor=actor,
                                reason=reason or f"form {form.slug}", at=utcnow()))
    else:
        for key, value in merge_profile(_profile(lead), attributes).items():
            setattr(lead, key, value)
        if _consented(fields):
            lead.consent = True
        if fields.get("message"):
            lead.pain_point = clean_text(fields.get("message"), 5000)
        if lead.stage in NURTURABLE and lead.stage != target and not (
                lead.stage == "subscriber" and target == "disqualified"):
            change_stage(lead, target, actor, reason or f"accepted submission on form {form.slug}")
    from ..scoring import refresh_fit, track
    if not accepted:
        refresh_fit(lead, f"profile from form {form.slug}")
    else:
        track(lead, "form_submitted", key=f"submission:{submission.id}",
              properties={"form": form.slug, "submission_id": submission.id,
                          "intent": fields.get("intent")},
              occurred_at=submission.created_at, source=f"form:{form.slug}", actor=actor)
        from ..nurture.engine import enroll_matching
        enroll_matching(lead, "lead_accepted", form=form.slug)


def _profile(lead) -> dict:
    return {key: getattr(lead, key) for key in
            ("name", "company", "segment", "intent", "job_title", "phone", "country", "company_size")}


def _consented(fields: dict) -> bool:
    return str(fields.get("consent") or "").lower() in ("y", "yes", "true", "on", "1")


def _domain(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return (urlsplit(url).hostname or None)
    except ValueError:
        return None


def record_forms(forms) -> None:
    """Keep the `forms` table in step with the definitions as loaded."""
    for form in forms:
        record = session.query(FormRecord).filter_by(slug=form.slug).one_or_none() or FormRecord(slug=form.slug)
        record.language, record.title = form.definition.language, form.definition.title
        record.definition, record.checksum, record.loaded_at = form.as_json(), form.checksum, utcnow()
        session.add(record)
