"""WTForms classes built from a form definition, shared by the HTML post
(with Flask-WTF's CSRF) and the cross-origin JSON post (signed render token)."""
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import (BooleanField, HiddenField, RadioField, SelectField, StringField,
                     TextAreaField, ValidationError)
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..qualify.profile import normalize_email
from .forms import UTM_FIELDS, Form

HONEYPOT = "website"
RENDER_TOKEN = "lf_token"

MESSAGES = {
    "fr": {"email": "Saisissez une adresse e-mail valide, par exemple nom@entreprise.fr.",
           "required": "Ce champ est obligatoire.",
           "too_long": "Ce champ ne peut pas dépasser {max} caractères.",
           "choice": "Choisissez une des réponses proposées.",
           "csrf": "Votre session a expiré : vérifiez vos réponses et envoyez à nouveau.",
           "fix": "Corrigez les champs signalés puis envoyez à nouveau."},
    "en": {"email": "Enter a valid email address, like name@company.com.",
           "required": "This field is required.",
           "too_long": "This field cannot be longer than {max} characters.",
           "choice": "Choose one of the answers offered.",
           "csrf": "Your session expired: check your answers and send again.",
           "fix": "Please correct the highlighted fields and send again."},
}


def messages(language: str) -> dict:
    return MESSAGES.get(language.split("-")[0], MESSAGES["en"])


def _email_validator(text):
    def check(form, field):
        if field.data:
            try:
                normalize_email(field.data)
            except ValueError:
                raise ValidationError(text["email"]) from None
    return check


def _field(spec, text):
    required = [InputRequired(message=text["required"])] if spec.required else [Optional()]
    length = Length(max=spec.max_length, message=text["too_long"].format(max=spec.max_length))
    kwargs = {"label": spec.label, "description": spec.help}
    if spec.type in ("text", "tel"):
        return StringField(validators=required + [length], **kwargs)
    if spec.type == "email":
        return StringField(validators=required + [length, _email_validator(text)], **kwargs)
    if spec.type == "textarea":
        return TextAreaField(validators=required + [length], **kwargs)
    if spec.type == "select":
        choices = [("", "—")] + [(c.value, c.label) for c in spec.choices]
        return SelectField(choices=choices, validate_choice=False,
                           validators=required + [_one_of(spec, text)], **kwargs)
    if spec.type == "radio":
        return RadioField(choices=[(c.value, c.label) for c in spec.choices], validate_choice=False,
                          validators=required + [_one_of(spec, text)], **kwargs)
    if spec.type == "checkbox":
        return BooleanField(validators=[DataRequired(message=text["required"])] if spec.required
                            else [Optional()], **kwargs)
    return HiddenField(validators=[Optional(), length])


def _one_of(spec, text):
    values = {c.value for c in spec.choices}

    def check(form, field):
        if field.data not in values:
            raise ValidationError(text["choice"])
    return check


def form_class(form: Form, csrf: bool):
    """A FlaskForm subclass for this definition."""
    text = messages(form.definition.language)
    attrs = {spec.name: _field(spec, text) for spec in form.fields}
    if form.definition.utm_fields:
        for name in UTM_FIELDS:
            attrs.setdefault(name, HiddenField(validators=[Optional(), Length(max=200)]))
    attrs[HONEYPOT] = StringField(validators=[Optional()])
    attrs[RENDER_TOKEN] = HiddenField(validators=[Optional()])

    class Meta:
        locales = [form.definition.language, "en"]

    attrs["Meta"] = type("Meta", (), {"locales": Meta.locales, "csrf": csrf})
    return type(f"Form_{form.slug.replace('-', '_')}", (FlaskForm,), attrs)


def build(form: Form, formdata=None, csrf: bool = True):
    cls = form_class(form, csrf)
    return cls(formdata=formdata) if formdata is not None else cls()


def json_formdata(fields: dict) -> tuple[MultiDict | None, dict]:
    """JSON fields as form data. Values must be strings, numbers or booleans;
    anything else is a field error rather than a crash."""
    data, errors = MultiDict(), {}
    for key, value in fields.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, bool):
            if value:
                data.add(key, "y")
        elif isinstance(value, (str, int, float)):
            data.add(key, str(value))
        elif value is not None:
            errors[key] = ["must be a string"]
    return data, errors


def field_errors(wtform) -> dict[str, list[str]]:
    return {name: [str(e) for e in errs] for name, errs in wtform.errors.items()}


AUTOCOMPLETE = {"email": "email", "name": "name", "company": "organization",
                "job_title": "organization-title", "phone": "tel"}


def input_attrs(spec, field) -> dict:
    """HTML attributes for one rendered input: accessibility and phone keyboards."""
    attrs = {"required": spec.required}
    if spec.placeholder:
        attrs["placeholder"] = spec.placeholder
    if spec.name in AUTOCOMPLETE:
        attrs["autocomplete"] = AUTOCOMPLETE[spec.name]
    if spec.type in ("email", "tel"):
        attrs["type"] = spec.type
    if spec.type in ("text", "email", "tel", "textarea"):
        attrs["maxlength"] = spec.max_length
    if field.errors:
        attrs["aria-invalid"] = "true"
        attrs["aria-describedby"] = f"{spec.name}-error"
    return attrs
