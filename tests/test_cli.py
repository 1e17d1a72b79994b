"""The commands marketers and scripts call (contract: `leadflow verdicts`)."""
import json
import shutil


LINES = [
    {"id": 1, "form": "contact", "fields": {"name": "Camille Martin", "company": "Boulangeries Réunies",
                                            "email": "camille@boulangeries.fr", "segment": "pme",
                                            "intent": "contact_sales", "job_title": "DG", "message": "Bonjour"},
     "meta": {"elapsed_ms": 15000, "honeypot": "", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0"}},
    {"id": "b", "form": "contact-en", "fields": {"name": "Paul", "company": "HubSpot, Inc.",
                                                 "email": "paul@hubspot.com", "intent": "research"},
     "meta": {"elapsed_ms": 9000}},
    {"id": 3, "form": "contact", "fields": {"name": "Léa", "email": "lea@etu.univ-lyon1.fr",
                                            "intent": "none"}, "meta": {"elapsed_ms": 9000}},
    {"id": 4, "form": "contact", "fields": {"name": "x", "email": "x@mailinator.com"},
     "meta": {"elapsed_ms": 300, "honeypot": "http://spam"}},
    {"id": 5, "form": "contact", "fields": {"name": "Jo", "email": "jo@acme.fr", "intent": "other"},
     "meta": {"elapsed_ms": 9000}},
]


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_verdicts_judge_each_line_like_the_web_path(app, tmp_path):
    source = tmp_path / "last-month.jsonl"
    source.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in LINES) + "\n", encoding="utf-8")
    result = run(app, "verdicts", str(source))
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    assert out == [
        {"id": 1, "verdict": "accepted", "reasons": []},
        {"id": "b", "verdict": "excluded", "reasons": ["competitor"]},
        {"id": 3, "verdict": "excluded", "reasons": ["student", "no_intent"]},
        {"id": 4, "verdict": "excluded", "reasons": ["spam:honeypot", "spam:too_fast", "spam:disposable"]},
        {"id": 5, "verdict": "review", "reasons": ["other_intent"]},
    ]


def test_verdicts_try_a_rules_change_and_skip_unreadable_lines(app, tmp_path, forms_dir):
    rules = tmp_path / "rules.yaml"
    rules.write_text((forms_dir / "rules.yaml").read_text().replace("competitor_domains:",
                                                                   "competitor_domains:\n  - acme.fr"))
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(LINES[4]) + "\nnot json\n" + json.dumps(LINES[0]) + "\n")
    result = run(app, "verdicts", "--rules", str(rules), str(source))
    assert result.exit_code == 0
    verdicts = [json.loads(line) for line in result.output.splitlines() if line.startswith('{"id"')]
    assert verdicts[0] == {"id": 5, "verdict": "excluded", "reasons": ["competitor"]}
    assert verdicts[1]["verdict"] == "accepted"
    assert "unreadable line" in result.output


def test_forms_load_prints_the_embed_codes(app):
    result = run(app, "forms", "load", "--base-url", "https://forms.example.com")
    assert result.exit_code == 0, result.output
    assert '<iframe src="https://forms.example.com/f/contact?frame=1"' in result.output
    assert '<script src="https://forms.example.com/f/contact-en/embed.js" async></script>' in result.output
    assert "2 form(s) loaded, 0 with errors" in result.output


def test_check_names_file_line_and_key_and_keeps_the_other_forms(app_factory, pg_url, forms_dir, tmp_path):
    for path in forms_dir.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    broken = (tmp_path / "contact-en.yaml").read_text().replace("type: email", "type: e-mail", 1)
    (tmp_path / "contact-en.yaml").write_text(broken)
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "type: e-mail" in text)
    app = app_factory(pg_url, FORMS_DIR=str(tmp_path))
    result = run(app, "check")
    assert result.exit_code == 1
    # the folder's own name, then file:line: key: problem
    assert f"/contact-en.yaml:{line}: fields[2].type: Input should be 'text'" in result.output
    assert app.test_client().get("/f/contact").status_code == 200  # the other form still serves
