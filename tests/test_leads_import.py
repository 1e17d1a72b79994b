"""CSV import, from `leadflow leads import` and from the import page: every
row kept as a submission, judged by the capture rules, reported line by line."""
import csv
import dataclasses
import io
import re
from html import unescape

import pytest
from sqlalchemy import func, select

from app.db import session
from app.leads_ui import importer
from app.models import Lead, LeadImport, StageChange, Submission, User, utcnow
from tests import factories
from tests.test_auth import login, make_user, token

FRENCH = ("\ufeffCourriel;Prénom;Nom;Société;Fonction;Pays;Téléphone;Segment;Notes internes\r\n"
          "camille@martin-conseil.fr;Camille;Martin;Martin Conseil;DAF;France;+33 1 23 45 67 89;PME;vu au salon\r\n"
          "\r\n"
          "jean@etu.univ-lyon1.fr;Jean;Petit;Université Lyon 1;Étudiant;France;;;\r\n"
          "spy@hubspot.com;Sam;Spy;HubSpot France SAS;Marketing;États-Unis;;;\r\n"
          "pas-un-email;Paul;Sans;Nulle Part;;;;;\r\n"
          "old@client.fr;;;Client SA;Acheteur;Belgique;;;\r\n"
          "bot@mailinator.com;Bot;Bot;Spam Inc;;;;;\r\n"
          "camille@martin-conseil.fr;;;;;Atlantide;;;\r\n"
          ";;;;;;;;\r\n")


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["leads", "import", *map(str, args)])


def lead(email) -> Lead | None:
    return session.execute(select(Lead).where(Lead.email == email)).scalar_one_or_none()


@pytest.fixture
def existing(app):
    with app.app_context():
        return factories.lead("old@client.fr", name="Old Client", stage="lead").id


def test_cli_imports_a_french_semicolon_file_with_bom(app, tmp_path, existing):
    path = tmp_path / "salon.csv"
    path.write_bytes(FRENCH.encode("utf-8"))
    result = cli(app, path, "--report", tmp_path / "report.csv")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Courriel → email" in out and "Prénom → first_name" in out and "Nom → last_name" in out
    assert "ignored: Notes internes" in out
    assert "7 rows: 1 created, 2 merged, 4 rejected, 0 for review" in out
    assert "line 4: jean@etu.univ-lyon1.fr: rejected (student): kept as a disqualified lead" in out
    assert "line 5: spy@hubspot.com: rejected (competitor)" in out
    assert re.search(r"line 6: pas-un-email: rejected \(invalid_email\): invalid email: .+", out)
    assert "line 7: old@client.fr: merged: blanks filled: company, job_title, country" in out
    assert "line 8: bot@mailinator.com: rejected (spam:disposable): spam: no lead made" in out
    assert ('line 9: camille@martin-conseil.fr: merged: country "Atlantide" not recognised: left blank; '
            "nothing new to fill") in out
    with app.app_context():
        camille = lead("camille@martin-conseil.fr")
        assert (camille.name, camille.company, camille.job_title, camille.country, camille.phone,
                camille.segment, camille.stage, camille.first_form) == (
            "Camille Martin", "Martin Conseil", "DAF", "FR", "+33 1 23 45 67 89", "PME", "lead", "import")
        old = lead("old@client.fr")
        assert (old.name, old.company, old.country) == ("Old Client", "Client SA", "BE")  # blanks filled only
        student = lead("jean@etu.univ-lyon1.fr")
        assert student.stage == "disqualified" and student.stage_reason == "student"
        assert lead("spy@hubspot.com").stage == "disqualified"
        assert lead("bot@mailinator.com") is None
        # every row of the file is kept as a submission, blank rows apart
        subs = session.execute(select(Submission).order_by(Submission.id)).scalars().all()
        assert len(subs) == 7 and {s.channel for s in subs} == {"import"}
        assert [s.verdict for s in subs] == ["accepted", "excluded", "excluded", "invalid", "accepted",
                                             "excluded", "accepted"]
        first = subs[0]
        assert first.payload["import"] == {"file": "salon.csv", "line": 2, "columns": {
            "Courriel": "camille@martin-conseil.fr", "Prénom": "Camille", "Nom": "Martin",
            "Société": "Martin Conseil", "Fonction": "DAF", "Pays": "France", "Téléphone": "+33 1 23 45 67 89",
            "Segment": "PME", "Notes internes": "vu au salon"}}
        assert first.lead_id == camille.id and first.decided_by == "import:cli"
        assert subs[2].reasons == ["competitor"]
        assert session.execute(select(StageChange).where(StageChange.lead_id == camille.id)).scalar_one().actor \
            == "import:cli"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text(encoding="utf-8"))))
    assert [(r["line"], r["outcome"], r["reasons"]) for r in rows] == [
        ("2", "created", ""), ("4", "rejected", "student"), ("5", "rejected", "competitor"),
        ("6", "rejected", "invalid_email"), ("7", "merged", ""), ("8", "rejected", "spam:disposable"),
        ("9", "merged", "")]


def test_cli_with_a_form_and_explicit_mapping_on_a_windows_1252_file(app, tmp_path):
    text = ("Adresse pro,Qui,Boîte,Taille,Origine\r\n"
            "zoe@fabrique.fr,Zoé Lefèvre,La Fabrique,pme,webinar\r\n"
            "luc@atelier.fr,Luc Noël,=HYPERLINK(\"x\"),Grand compte (plus de 5 000),\r\n")
    path = tmp_path / "excel.csv"
    path.write_bytes(text.encode("cp1252"))
    result = cli(app, path, "--form", "contact", "--map", "Adresse pro=email", "--map", "Qui=name",
                 "--map", "Boîte=company", "--map", "Taille=segment", "--map", "Origine=source")
    assert result.exit_code == 0, result.output
    assert "2 rows: 2 created" in result.output
    with app.app_context():
        zoe, luc = lead("zoe@fabrique.fr"), lead("luc@atelier.fr")
        assert (zoe.name, zoe.company, zoe.segment, zoe.source, zoe.language, zoe.first_form) == (
            "Zoé Lefèvre", "La Fabrique", "pme", "webinar", "fr", "contact")
        assert luc.segment == "grand_compte"  # a choice's label is read as its value
        assert session.execute(select(Submission.form_slug).distinct()).scalars().all() == ["contact"]


def test_cli_refuses_a_file_it_cannot_read(app, tmp_path):
    path = tmp_path / "no-email.csv"
    path.write_text("Name,Company\nLéa,Acme\n", encoding="utf-8")
    result = cli(app, path)
    assert result.exit_code != 0 and "no email column found (columns: Name, Company)" in result.output
    assert "--map" in result.output
    bad_map = cli(app, path, "--map", "Nope=email")
    assert bad_map.exit_code != 0 and "does not have: 'Nope'" in bad_map.output
    assert cli(app, path, "--map", "Name=shoe_size").exit_code != 0
    assert cli(app, path, "--form", "no-such-form", "--map", "Name=email").exit_code != 0
    with app.app_context():
        assert session.execute(select(func.count()).select_from(Submission)).scalar() == 0


def test_a_failing_row_costs_only_itself(app, tmp_path, monkeypatch):
    real = importer.apply_to_lead

    def flaky(submission, form, fields, verdict, actor):
        if fields["email"].startswith("boom"):
            raise RuntimeError("database said no")
        return real(submission, form, fields, verdict, actor)
    monkeypatch.setattr(importer, "apply_to_lead", flaky)
    path = tmp_path / "f.csv"
    path.write_text("email,name\na@ok.fr,A\nboom@ok.fr,B\nc@ok.fr,C\n", encoding="utf-8")
    result = cli(app, path)
    assert result.exit_code == 0, result.output
    assert "line 3: boom@ok.fr: rejected (error): not imported, an error occurred: database said no" in result.output
    assert "3 rows: 2 created" in result.output
    with app.app_context():
        assert lead("a@ok.fr") and lead("c@ok.fr") and lead("boom@ok.fr") is None
        kept = session.execute(select(Submission).where(Submission.verdict == "pending")).scalar_one()
        assert kept.payload["import"]["columns"] == {"email": "boom@ok.fr", "name": "B"}


# --- reading and mapping, pure ------------------------------------------------------

def test_headers_in_english_and_french():
    assert importer.map_columns(["E-mail", "Full Name", "Company", "Job Title", "Phone", "Country"]) == {
        "E-mail": "email", "Full Name": "name", "Company": "company", "Job Title": "job_title",
        "Phone": "phone", "Country": "country"}
    assert importer.map_columns(["courriel", "nom", "entreprise", "poste", "pays", "téléphone"]) == {
        "courriel": "email", "nom": "name", "entreprise": "company", "poste": "job_title", "pays": "country",
        "téléphone": "phone"}
    assert importer.map_columns(["Email", "First name", "Last name"])["Last name"] == "last_name"
    assert importer.map_columns(["Email", "Name", "First name"])["Name"] == "last_name"


def test_reading_quoted_cells_blank_lines_and_odd_headers():
    headers, rows = importer.read_csv(b'\n\nemail;;email\n"a@b.fr";"x;y";second\n\n;;\n"c@d.fr";;;extra\n')
    assert headers == ["email", "column 2", "email (2)"]
    assert rows == [(4, {"email": "a@b.fr", "column 2": "x;y", "email (2)": "second"}),
                    (7, {"email": "c@d.fr", "column 2": "", "email (2)": "", "column 4": "extra"})]


@pytest.mark.parametrize("value, code", [("France", "FR"), ("fr", "FR"), ("Allemagne", "DE"), ("Germany", "DE"),
                                         ("États-Unis", "US"), ("UK", "GB"), ("Royaume-Uni", "GB"), ("Mars", None)])
def test_country_codes(value, code):
    assert importer.country_code(value) == code


# --- the import page -------------------------------------------------------------------

@pytest.fixture
def mia(app):
    with app.app_context():
        make_user("mia@leadflow.example", "marketer", "Mia")
        make_user("claire@leadflow.example", "sales", "Claire")
    client = app.test_client()
    assert login(client, "mia@leadflow.example").status_code == 302
    return client


def upload(client, data: bytes, name="leads.csv", **fields):
    """Post a file; without a broker the import runs before the redirect to its page."""
    fields.setdefault("csrf_token", token(client, "/leads/import"))
    return client.post("/leads/import", data={"file": (io.BytesIO(data), name), **fields},
                       content_type="multipart/form-data", follow_redirects=True)


def test_page_imports_and_reports(app, mia, existing):
    response = upload(mia, FRENCH.encode("utf-8"), "salon.csv")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "7 rows: 1 created, 2 merged, 4 rejected, 0 for review." in html
    assert "student" in html and "competitor" in html and "spam:disposable" in html
    assert "blanks filled: company, job_title, country" in html and "kept as a disqualified lead" in html
    link = unescape(re.search(r'href="(/leads/import/\d+/report\.csv)"', html).group(1))
    report = mia.get(link)
    assert report.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 7 and rows[0]["outcome"] == "created" and rows[0]["email"] == "camille@martin-conseil.fr"
    with app.app_context():
        assert lead("camille@martin-conseil.fr").first_form == "import"
        mia_id = session.execute(select(User.id).where(User.email == "mia@leadflow.example")).scalar_one()
        assert session.execute(select(Submission.decided_by).distinct()).scalars().all() == [f"import:user:{mia_id}"]


def test_page_refuses_what_it_should(app, mia):
    assert mia.get("/leads/import").status_code == 200
    assert upload(mia, b"", "").status_code == 422  # no file chosen
    assert "no email column found" in upload(mia, b"name\nx\n").get_data(as_text=True)
    too_big = upload(mia, b"email\n" + b"a@b.fr\n" * (importer.MAX_BYTES // 7 + 1))
    assert too_big.status_code == 413 and "larger than 5 MB" in too_big.get_data(as_text=True)
    assert mia.post("/leads/import", data={"file": (io.BytesIO(b"email\na@b.fr\n"), "x.csv")},
                    content_type="multipart/form-data").status_code == 400  # no CSRF token
    claire = app.test_client()
    login(claire, "claire@leadflow.example")
    assert claire.get("/leads/import").status_code == 403
    with app.app_context():
        assert session.execute(select(func.count()).select_from(Lead)).scalar() == 0


def test_script_in_a_file_is_spam_and_shown_escaped(app, mia):
    html = upload(mia, b"email,name\nx@acme.fr,<script>alert(1)</script>\n").get_data(as_text=True)
    assert "spam:markup_in_identity" in html and "<script>alert(1)" not in html


# --- the import as a background task --------------------------------------------------

ROWS = "email,name\n" + "".join(f"p{i}@client{i}.fr,Person {i}\n" for i in range(7))


def queued(app, data: str = ROWS, **fields):
    """An import kept by the page but not run yet (as with a broker)."""
    with app.app_context():
        mia_id = make_user("mia.b@leadflow.example", "marketer", "Mia B")
        job = importer.queue_import(data.encode(), "people.csv", None, mia_id)
        for name, value in fields.items():
            setattr(job, name, value)
        session.info.pop("leadflow.tasks", None)  # no worker here: the test runs it
        session.commit()
        return job.id


def test_a_stopped_import_resumes_after_the_rows_it_recorded(app):
    """A worker died after recording 3 rows: the sweep hands the stale import
    to another run, which imports the 4 rows left, once each."""
    job_id = queued(app)
    with app.app_context():
        job = session.get(LeadImport, job_id)
        first = importer.plan(job.data).rows[:3]
        done = importer.import_rows(importer.plan(job.data), job.filename, job.actor, rows=first)
        job.status, job.done_rows = "running", 3
        job.results = [dataclasses.asdict(r) for r in done]
        job.heartbeat_at = utcnow() - importer.STALE / 2
        session.commit()
        assert importer.run_queued_import(job_id) == "not claimed"  # its worker may still be alive
        later = utcnow() + importer.STALE
        assert importer.stalled_imports(later) == [job_id]
        assert importer.run_queued_import(job_id, now=later) == "done"
        job = session.get(LeadImport, job_id, populate_existing=True)
        assert (job.status, job.done_rows, len(job.results)) == ("done", 7, 7)
        assert [r["line"] for r in job.results] == list(range(2, 9))
        assert session.execute(select(func.count()).select_from(Submission)).scalar() == 7
        assert session.execute(select(func.count()).select_from(Lead)).scalar() == 7
        assert importer.run_queued_import(job_id) == "not claimed"  # done is done


def test_an_import_whose_form_was_removed_fails_plainly(app):
    job_id = queued(app, form_slug="gone")
    with app.app_context():
        assert importer.run_queued_import(job_id) == "failed"
        job = session.get(LeadImport, job_id)
        assert job.error == "no form named 'gone'" and job.done_rows == 0


def test_status_page_and_json_while_queued(app, mia):
    job_id = queued(app)
    html = mia.get(f"/leads/import/{job_id}").get_data(as_text=True)
    assert "0 of 7 rows imported." in html and "<progress" in html
    assert mia.get(f"/leads/import/{job_id}/status.json").get_json() == {"status": "queued", "done": 0, "total": 7}
    assert mia.get("/leads/import/999999").status_code == 404
