"""Form definitions: forms/<slug>.yaml, validated on load.

A broken file is reported with its file, line, key and problem, and never
takes the other forms down: load_all() returns the good ones and the errors.
"""
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..definitions import DefinitionError, DefinitionFolder, load, load_each

FIELD_TYPES = ("text", "email", "tel", "textarea", "select", "radio", "checkbox", "hidden")
KNOWN_NAMES = ("name", "company", "email", "segment", "intent", "job_title", "message",
               "consent", "phone", "country", "company_size")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(Strict):
    value: str = Field(min_length=1, max_length=80)
    label: str = Field(min_length=1)
    # Only for the intent question: what the answer does to the verdict.
    disposition: Literal["accept", "disqualify", "review"] | None = None


class FieldDef(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    type: Literal[FIELD_TYPES]  # type: ignore[valid-type]
    label: str = ""
    required: bool = False
    placeholder: str = ""
    help: str = ""
    max_length: int = Field(default=300, ge=1, le=100_000)
    choices: tuple[Choice, ...] = ()

    @model_validator(mode="after")
    def _choices_match_type(self):
        if self.type in ("select", "radio") and not self.choices:
            raise ValueError(f"a '{self.type}' field needs choices")
        if self.type not in ("select", "radio") and self.choices:
            raise ValueError(f"a '{self.type}' field takes no choices")
        if self.type != "hidden" and not self.label:
            raise ValueError("a visible field needs a label")
        values = [c.value for c in self.choices]
        if len(values) != len(set(values)):
            raise ValueError("choice values must be unique")
        return self


class ThankYou(Strict):
    message: str = ""
    redirect: str | None = None

    @field_validator("redirect")
    @classmethod
    def _http_only(cls, value):
        if value and not re.match(r"^https?://", value):
            raise ValueError("redirect must be an http(s) URL")
        return value


class FormDef(Strict):
    title: str = Field(min_length=1, max_length=200)
    language: str = Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    intro: str = ""
    submit_label: str = Field(min_length=1)
    fields: tuple[FieldDef, ...] = Field(min_length=1)
    thank_you: ThankYou
    allowed_origins: tuple[str, ...] = ()
    utm_fields: bool = True
    min_fill_ms: int | None = Field(default=None, ge=0)
    # Accepted leads are enrolled in these campaigns' audiences by later steps.
    tags: tuple[str, ...] = ()

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins):
        for origin in origins:
            if not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"'{origin}' is not an origin (scheme://host[:port], no path)")
        return origins

    @model_validator(mode="after")
    def _fields_make_sense(self):
        names = [f.name for f in self.fields]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"field names must be unique: {', '.join(sorted(duplicates))}")
        if "email" not in names:
            raise ValueError("a form needs an 'email' field: leads are keyed by email")
        intent = next((f for f in self.fields if f.name == "intent"), None)
        if intent and any(c.disposition is None for c in intent.choices):
            raise ValueError("every intent choice needs a disposition (accept, disqualify or review)")
        return self


@dataclass(frozen=True)
class Form:
    """A loaded, valid form."""
    slug: str
    definition: FormDef
    path: str

    @property
    def fields(self):
        return self.definition.fields

    def field(self, name):
        return next((f for f in self.definition.fields if f.name == name), None)

    @property
    def intent_dispositions(self) -> dict[str, str]:
        intent = self.field("intent")
        return {c.value: c.disposition for c in intent.choices} if intent else {}

    def as_json(self) -> dict:
        return self.definition.model_dump(mode="json")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(json.dumps(self.as_json(), sort_keys=True).encode()).hexdigest()


def load_form(path: Path) -> Form:
    path = Path(path)
    slug = path.stem
    if not SLUG.match(slug):
        raise DefinitionError(f"{path.parent.name}/{path.name}", "",
                              "file name must be a slug: lowercase letters, digits and dashes")
    return Form(slug=slug, definition=load(FormDef, path), path=str(path))


def form_files(forms_dir) -> list[Path]:
    # rules.yaml sits beside the forms but is not one.
    return sorted(p for p in Path(forms_dir).glob("*.yaml") if p.name != "rules.yaml")


def load_all(forms_dir) -> tuple[dict[str, Form], list[DefinitionError]]:
    return load_each(form_files(forms_dir), load_form)


def FormRegistry(forms_dir) -> DefinitionFolder:  # noqa: N802 (reads as the class it builds)
    """The forms of a forms/ folder, re-read when a file changes."""
    return DefinitionFolder(lambda: form_files(forms_dir), load_form)
