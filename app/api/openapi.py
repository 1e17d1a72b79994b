"""The OpenAPI 3.1 description of /api/v1, written by hand: two endpoints
don't need a generator, and this way the words are ours."""

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


UNAUTHORIZED = {**_error("No token, an unknown one or a revoked one."),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                                                 "description": 'Bearer realm="leadflow"'}}}

SCALAR = {"type": ["string", "number", "integer", "boolean", "null"], "maxLength": 2000}


def spec(base_url: str) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadflow API", "version": "1",
            "description": (
                "Record what leads do in other systems (CRM, webinar tool, shop) and read a lead's "
                "score and stage. Events are scored by the marketer's scoring model "
                "(campaigns/scoring.yaml); crossing the MQL threshold hands the lead to sales. "
                "Create a token with `leadflow tokens create --name NAME`."),
        },
        "servers": [{"url": base_url.rstrip("/") + "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/events": {"post": {
                "operationId": "recordEvent",
                "summary": "Record an event for a lead",
                "description": (
                    "The email is normalized (trimmed, lowercased). An unknown email becomes a new lead "
                    "only when the scoring model says the kind creates leads (`creates_lead: true`, "
                    "e.g. newsletter_subscribed, webinar_registered); it starts at stage `subscriber` "
                    "for newsletter_subscribed and `lead` otherwise. With a `key`, repeating the call "
                    "records nothing more and answers 200 with `duplicate: true`: retry freely."),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/EventIn"},
                    "example": {"email": "lea@acme.fr", "kind": "webinar_registered",
                                "properties": {"webinar": "2026-12-live-demo"},
                                "key": "zoom-registration-8812", "occurred_at": "2026-03-01T09:30:00Z"}}}},
                "responses": {
                    "201": _json("EventOut", "Recorded and scored."),
                    "200": _json("EventOut", "Already recorded under this key: nothing changed."),
                    "400": _error("The body is not JSON."),
                    "401": UNAUTHORIZED,
                    "404": _error("Unknown lead, and this kind does not create leads."),
                    "413": _error("The body is larger than 64 KiB."),
                    "415": _error("Content-Type is not application/json."),
                    "422": _json("ValidationError", "A field is missing, of the wrong type or invalid."),
                }}},
            "/leads/{email}": {"get": {
                "operationId": "getLead",
                "summary": "A lead's profile, stage and scores",
                "parameters": [{"name": "email", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "email"},
                                "description": "Any spelling of the address: it is normalized."}],
                "responses": {
                    "200": _json("Lead", "The lead."),
                    "401": UNAUTHORIZED,
                    "404": _error("No lead has this email."),
                    "422": _error("Not an email address."),
                }}},
        },
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token from `leadflow tokens create --name NAME` (only its hash is stored)."}},
            "schemas": {
                "EventIn": {
                    "type": "object", "additionalProperties": False, "required": ["email", "kind"],
                    "properties": {
                        "email": {"type": "string", "format": "email", "maxLength": 320},
                        "kind": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,59}$",
                                 "examples": ["page_visited", "article_read", "linkedin_followed",
                                              "newsletter_subscribed", "asset_downloaded",
                                              "webinar_registered", "demo_requested"]},
                        "properties": {"type": "object", "maxProperties": 50,
                                       "propertyNames": {"minLength": 1, "maxLength": 60},
                                       "additionalProperties": SCALAR,
                                       "description": "Flat values that scoring rules match, e.g. "
                                                      "{\"asset\": \"ebook-2026\"}."},
                        "key": {"type": ["string", "null"], "minLength": 1, "maxLength": 190,
                                "description": "Idempotency key: one event per (lead, kind, key)."},
                        "occurred_at": {"type": ["string", "null"], "format": "date-time",
                                        "description": "RFC 3339 with an offset; default now. "
                                                       "Not in the future, not before 1970."},
                    }},
                "EventOut": {
                    "type": "object",
                    "required": ["event_id", "points", "score", "stage", "temperature", "duplicate"],
                    "properties": {
                        "event_id": {"type": "integer"},
                        "points": {"type": "number", "description": "What this event added to the MQL score."},
                        "score": {"type": "number", "description": "The lead's MQL score, rounded to 2 places."},
                        "stage": {"$ref": "#/components/schemas/Stage"},
                        "temperature": {"$ref": "#/components/schemas/Temperature"},
                        "duplicate": {"type": "boolean"},
                        "lead_created": {"type": "boolean"},
                    }},
                "Lead": {
                    "type": "object",
                    "required": ["email", "stage", "score", "temperature", "scores", "created_at"],
                    "properties": {
                        "id": {"type": "integer"},
                        "email": {"type": "string", "format": "email"},
                        "name": {"type": ["string", "null"]},
                        "company": {"type": ["string", "null"]},
                        "job_title": {"type": ["string", "null"]},
                        "country": {"type": ["string", "null"]},
                        "segment": {"type": ["string", "null"]},
                        "stage": {"$ref": "#/components/schemas/Stage"},
                        "score": {"type": "number"},
                        "temperature": {"$ref": "#/components/schemas/Temperature"},
                        "scores": {"type": "object", "additionalProperties": {"type": "number"},
                                   "description": "Every named score of the model, e.g. main, product_b."},
                        "owner": {"type": ["string", "null"], "format": "email",
                                  "description": "The assigned salesperson's email."},
                        "mql_at": {"type": ["string", "null"], "format": "date-time"},
                        "created_at": {"type": "string", "format": "date-time"},
                    }},
                "Stage": {"type": "string", "enum": ["subscriber", "lead", "mql", "sal", "sql", "opportunity",
                                                     "customer", "disqualified", "recycled", "lost"]},
                "Temperature": {"type": ["string", "null"], "enum": ["warm", "hot", "very_hot", None],
                                "description": "Only for MQL-level scores."},
                "Error": {"type": "object", "required": ["error", "status"],
                          "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
                "ValidationError": {
                    "allOf": [{"$ref": "#/components/schemas/Error"}, {"type": "object", "properties": {
                        "errors": {"type": "array", "items": {
                            "type": "object", "required": ["field", "message"],
                            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}]},
            },
        },
    }
