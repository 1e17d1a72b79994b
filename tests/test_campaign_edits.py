"""Editing a running campaign: steps removed, renamed, reordered or added
while enrollments are in flight; a broken edit; pausing; re-entry; backfill.
Nothing crashes and nothing is sent twice."""
import os
import shutil
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import func, select

from app.config import PROJECT_ROOT
from app.db import session
from app.models import CampaignState, Enrollment, Lead, Mail
from app.nurture import engine
from app.nurture.engine import run_due
from app.scoring import lock_lead
from tests.capture_data import english_person, person, post_json
from tests.helpers import next_monday_10_paris

MONDAY_10_PARIS = next_monday_10_paris()
SATURDAY = MONDAY_10_PARIS - timedelta(days=2)
LEA = "lea@acme.fr"


@pytest.fixture
def campaigns_dir(tmp_path):
    directory = tmp_path / "campaigns"
    directory.mkdir()
    for name in ("nurture-fr.yaml", "nurture-en.yaml", "scoring.yaml", "sales.yaml"):
        shutil.copy(PROJECT_ROOT / "campaigns" / name, directory / name)
    return directory


@pytest.fixture
def app(app_factory, pg_url, campaigns_dir):
    return app_factory(pg_url, CAMPAIGNS_DIR=str(campaigns_dir))


@pytest.fixture
def client(app):
    return app.test_client()


def read(directory, slug="nurture-fr") -> dict:
    return yaml.safe_load((directory / f"{slug}.yaml").read_text(encoding="utf-8"))


def write(directory, data: dict, slug="nurture-fr") -> None:
    """Save a campaign as a marketer would, with a new modification time
    (the registry reloads a file when its mtime changes)."""
    path = directory / f"{slug}.yaml"
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    stamp = max(before + 1_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(stamp, stamp))


def edit(directory, change, slug="nurture-fr") -> dict:
    data = read(directory, slug)
    change(data)
    write(directory, data, slug)
    return data


def keys(data) -> list[str]:
    return [s["key"] for s in data["steps"]]


def without(*removed):
    def change(data):
        data["steps"] = [s for s in data["steps"] if s["key"] not in removed]
    return change


def sign_up(client, email=LEA, **fields):
    response = post_json(client, "contact", person(email=email, name="Léa Martin", **fields))
    assert response.status_code == 201, response.get_data(as_text=True)


def sent(email=LEA) -> list[str]:
    return [m.step_key for m in session.execute(select(Mail).where(Mail.recipient == email).order_by(Mail.id))
            .scalars()]


def enrollment(email=LEA, campaign="nurture-fr") -> Enrollment:
    return session.execute(select(Enrollment).join(Lead, Lead.id == Enrollment.lead_id)
                           .where(Lead.email == email, Enrollment.campaign == campaign)
                           .order_by(Enrollment.id.desc()).limit(1)).scalar_one()


def assert_nothing_sent_twice():
    per_step = Counter(session.execute(select(Mail.enrollment_id, Mail.step_key)).all())
    assert all(count == 1 for count in per_step.values()), per_step


@pytest.fixture
def waiting_at_pause_1(app, client):
    """Léa got `bienvenue` on Monday and waits at `pause-1` until Thursday."""
    sign_up(client)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 1
        current = enrollment()
        assert (current.step_key, current.waiting, current.path) == ("pause-1", True, ["bienvenue", "pause-1"])
        assert current.due_at == MONDAY_10_PARIS + timedelta(days=3)


# --- steps removed, renamed, reordered, added --------------------------------------------

def test_removing_the_step_it_waits_at_moves_on_to_the_successor(app, campaigns_dir, waiting_at_pause_1):
    edit(campaigns_dir, without("pause-1"))
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=1)) == 0  # still due when it was due
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 1
        assert sent() == ["bienvenue", "relance-courte"]  # bienvenue → (engagement: no opens) → relance-courte
        current = enrollment()
        assert (current.status, current.step_key, current.waiting) == ("active", "pause-4", True)
        assert "engagement" in current.path
        assert_nothing_sent_twice()


def test_removing_every_step_of_its_path_exits_with_the_step_removed(app, campaigns_dir, waiting_at_pause_1):
    def replace(data):
        data["steps"] = [{"key": "salut", "send": {"template": "nurture/fr/guide", "subject": "Salut"}},
                         {"key": "fin", "exit": True}]
    edit(campaigns_dir, replace)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 0
        current = enrollment()
        assert (current.status, current.exit_reason) == ("exited", "step_removed:pause-1")
        assert current.finished_at is not None
        assert sent() == ["bienvenue"]
        assert run_due(MONDAY_10_PARIS + timedelta(days=30)) == 0


def test_removing_the_rest_of_the_campaign_after_the_last_step_it_went_through(app, campaigns_dir,
                                                                                waiting_at_pause_1):
    def cut(data):
        data["steps"] = data["steps"][:1]  # only `bienvenue` is left
    edit(campaigns_dir, cut)
    with app.app_context():
        run_due(MONDAY_10_PARIS + timedelta(days=3))
        assert (enrollment().status, enrollment().exit_reason) == ("exited", "step_removed:pause-1")
        assert sent() == ["bienvenue"]


def test_renaming_the_wait_makes_it_wait_at_the_new_name(app, campaigns_dir, waiting_at_pause_1):
    def rename(data):
        data["steps"][1]["key"] = "attente-1"
    edit(campaigns_dir, rename)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 0
        current = enrollment()
        assert (current.status, current.step_key, current.waiting) == ("active", "attente-1", True)
        assert current.due_at == MONDAY_10_PARIS + timedelta(days=6)
        assert run_due(MONDAY_10_PARIS + timedelta(days=6)) == 0  # a Sunday: the window waits for Monday
        assert run_due(MONDAY_10_PARIS + timedelta(days=7)) == 1
        assert sent() == ["bienvenue", "relance-courte"]
        assert_nothing_sent_twice()


def test_renaming_the_first_step_before_it_went_out(app, client, campaigns_dir):
    sign_up(client)  # on Saturday: postponed to Monday 09:00
    with app.app_context():
        assert run_due(SATURDAY) == 0
        assert (enrollment().step_key, enrollment().path) == ("bienvenue", [])

    def rename(data):
        data["steps"][0]["key"] = "bienvenue-v2"
        data["steps"][2]["branch"][0]["when"]["clicked"] = "bienvenue-v2"
        data["steps"][2]["branch"][1]["when"]["opened"] = "bienvenue-v2"
    edit(campaigns_dir, rename)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 1
        assert sent() == ["bienvenue-v2"]
        assert (enrollment().status, enrollment().step_key) == ("active", "pause-1")


def test_reordering_steps_follows_keys_not_positions(app, campaigns_dir, waiting_at_pause_1):
    def reorder(data):
        steps = {s["key"]: s for s in data["steps"]}
        order = ["bienvenue", "pause-1", "engagement", "relance-courte", "pause-4", "seconde-chance",
                 "cas-client", "pause-3", "demo", "fin", "guide", "pause-2"]
        steps["guide"]["next"] = "pause-2"
        steps["pause-2"]["next"] = "cas-client"
        data["steps"] = [steps[k] for k in order]
    edit(campaigns_dir, reorder)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 1
        assert run_due(MONDAY_10_PARIS + timedelta(days=13)) == 0  # seconde-chance: not opened → fin
        assert sent() == ["bienvenue", "relance-courte"]
        current = enrollment()
        assert (current.status, current.exit_reason) == ("completed", "exit step fin")
        assert_nothing_sent_twice()


def test_a_step_added_ahead_is_sent_one_added_behind_is_not(app, client, campaigns_dir, waiting_at_pause_1):
    def add(data):
        data["steps"].insert(0, {"key": "intro", "send": {"template": "nurture/fr/guide", "subject": "Intro"}})
        at = keys(data).index("pause-1") + 1
        data["steps"][at:at] = [
            {"key": "astuce", "send": {"template": "nurture/fr/guide", "subject": "Une astuce"}},
            {"key": "pause-astuce", "wait": {"days": 1}}]
    edit(campaigns_dir, add)
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 1
        assert sent() == ["bienvenue", "astuce"]
        assert (enrollment().step_key, enrollment().waiting) == ("pause-astuce", True)
        assert run_due(MONDAY_10_PARIS + timedelta(days=4)) == 1
        assert sent() == ["bienvenue", "astuce", "relance-courte"]
        assert_nothing_sent_twice()
    # a lead arriving now starts at the new first step
    sign_up(client, email="marc@boulangeries.fr")
    with app.app_context():
        run_due(MONDAY_10_PARIS + timedelta(days=4))
        assert sent("marc@boulangeries.fr") == ["intro"]


def test_a_broken_edit_keeps_the_last_good_version_running(app, campaigns_dir, waiting_at_pause_1):
    path = campaigns_dir / "nurture-fr.yaml"
    good = path.read_text(encoding="utf-8")
    broken = good.replace("{goto: relance-courte}", "{goto: relance-courtee}")
    assert broken != good
    path.write_text(broken, encoding="utf-8")
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    listing = app.test_cli_runner().invoke(args=["campaigns", "list"])
    assert listing.exit_code == 0
    assert "nurture-fr" in listing.stdout
    assert "campaigns/nurture-fr.yaml" in listing.stderr and "relance-courtee" in listing.stderr
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 1
        assert sent() == ["bienvenue", "relance-courte"]


def test_deleting_the_campaign_file_ends_its_enrollments(app, campaigns_dir, waiting_at_pause_1):
    (campaigns_dir / "nurture-fr.yaml").unlink()
    with app.app_context():
        assert run_due(MONDAY_10_PARIS + timedelta(days=3)) == 0
        assert (enrollment().status, enrollment().exit_reason) == ("exited", "campaign_removed")


# --- pausing ---------------------------------------------------------------------------

def test_a_paused_campaign_sends_nothing_until_resumed(app, client):
    sign_up(client)
    sign_up(client, email="marc@boulangeries.fr")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["campaigns", "pause", "nurture-fr"])
    assert result.exit_code == 0 and "paused" in result.output
    with app.app_context():
        state = session.get(CampaignState, "nurture-fr")
        assert state.paused and state.changed_by == "cli"
        assert run_due(MONDAY_10_PARIS) == 0
        assert session.execute(select(func.count()).select_from(Mail)).scalar() == 0
        current = enrollment()
        assert (current.status, current.step_key) == ("active", "bienvenue")
        assert current.due_at > MONDAY_10_PARIS  # looked at again later, not every tick
        assert run_due(MONDAY_10_PARIS + timedelta(days=1)) == 0
    listing = runner.invoke(args=["campaigns", "list"])
    assert any(line.startswith("nurture-fr\t") and "\tpaused\t" in line for line in listing.stdout.splitlines())
    assert any(line.startswith("nurture-en\t") and "\trunning\t" in line for line in listing.stdout.splitlines())

    result = runner.invoke(args=["campaigns", "resume", "nurture-fr"])
    assert result.exit_code == 0 and "resumed" in result.output
    with app.app_context():
        assert not session.get(CampaignState, "nurture-fr").paused
        assert run_due(MONDAY_10_PARIS + timedelta(days=1, hours=1)) == 2
        assert sent() == ["bienvenue"] and sent("marc@boulangeries.fr") == ["bienvenue"]
        assert run_due(MONDAY_10_PARIS + timedelta(days=1, hours=1)) == 0


def test_pausing_one_campaign_leaves_the_others_running(app, client):
    sign_up(client)
    assert post_json(client, "contact-en", english_person()).status_code == 201
    assert app.test_cli_runner().invoke(args=["campaigns", "pause", "nurture-fr"]).exit_code == 0
    with app.app_context():
        assert run_due(MONDAY_10_PARIS) == 1
        assert sent() == [] and sent("jordan@acme-widgets.com") == ["welcome"]


# --- re-entry ------------------------------------------------------------------------

@pytest.fixture
def reentry_campaigns(campaigns_dir):
    base = read(campaigns_dir)
    base["triggers"] = ["manual"]
    for slug, policy in (("again-never", {"policy": "never"}), ("again-after", {"policy": "after", "days": 7}),
                         ("again-always", {"policy": "always"})):
        write(campaigns_dir, {**base, "reentry": policy}, slug)
    return campaigns_dir


@pytest.mark.parametrize("slug, allowed_after", [
    ("again-never", None), ("again-after", timedelta(days=7)), ("again-always", timedelta(0)),
])
def test_reentry_policy(app, client, reentry_campaigns, slug, allowed_after):
    sign_up(client)
    with app.app_context():
        campaign = engine.campaigns()[slug]
        lead_id = session.execute(select(Lead.id).where(Lead.email == LEA)).scalar_one()
        assert session.execute(select(func.count()).select_from(Enrollment)
                               .where(Enrollment.campaign == slug)).scalar() == 0  # manual only
        first = engine.enroll(lock_lead(lead_id), campaign, "manual", now=MONDAY_10_PARIS)
        assert first is not None and first.status == "active"
        # never twice at once, whatever the policy
        assert engine.enroll(lock_lead(lead_id), campaign, "manual", now=MONDAY_10_PARIS) is None
        first.status, first.exit_reason, first.finished_at = "completed", "last step done", MONDAY_10_PARIS
        session.commit()

        outcomes = {}
        for days in (0, 1, 6, 7, 8, 30):
            again = engine.enroll(lock_lead(lead_id), campaign, "manual",
                                  now=MONDAY_10_PARIS + timedelta(days=days, minutes=1))
            outcomes[days] = again is not None
            session.rollback()  # try each moment against the same history
        if allowed_after is None:
            assert not any(outcomes.values())
        else:
            assert outcomes == {d: timedelta(days=d, minutes=1) >= allowed_after for d in outcomes}


def test_reentering_sends_the_campaign_again(app, client, reentry_campaigns):
    sign_up(client)
    with app.app_context():
        campaign = engine.campaigns()["again-always"]
        lead_id = session.execute(select(Lead.id).where(Lead.email == LEA)).scalar_one()
        engine.enroll(lock_lead(lead_id), campaign, "manual", now=MONDAY_10_PARIS)
        session.commit()
        run_due(MONDAY_10_PARIS)
        first = enrollment(campaign="again-always")
        first.status, first.finished_at = "exited", MONDAY_10_PARIS
        session.commit()
        engine.enroll(lock_lead(lead_id), campaign, "manual", now=MONDAY_10_PARIS + timedelta(hours=1))
        session.commit()
        run_due(MONDAY_10_PARIS + timedelta(hours=1))
        welcomes = session.execute(select(Mail).where(Mail.campaign == "again-always")).scalars().all()
        assert [m.step_key for m in welcomes] == ["bienvenue", "bienvenue"]
        assert len({m.enrollment_id for m in welcomes}) == 2


# --- backfill --------------------------------------------------------------------------

def test_enroll_existing_backfills_matching_leads_once(app, client, campaigns_dir):
    kept = (campaigns_dir / "nurture-fr.yaml").read_text(encoding="utf-8")
    (campaigns_dir / "nurture-fr.yaml").unlink()  # the leads come before the campaign
    sign_up(client)
    sign_up(client, email="marc@boulangeries.fr")
    sign_up(client, email="gone@boulangeries.fr")
    assert post_json(client, "contact-en", english_person()).status_code == 201  # English: not in the audience
    with app.app_context():
        assert session.execute(select(func.count()).select_from(Enrollment)
                               .where(Enrollment.campaign == "nurture-fr")).scalar() == 0
        gone = session.execute(select(Lead).where(Lead.email == "gone@boulangeries.fr")).scalar_one()
        gone.unsubscribed_at = MONDAY_10_PARIS - timedelta(days=30)
        session.commit()
    (campaigns_dir / "nurture-fr.yaml").write_text(kept, encoding="utf-8")

    runner = app.test_cli_runner()
    result = runner.invoke(args=["campaigns", "enroll", "nurture-fr", "--existing"])
    assert result.exit_code == 0, result.output
    assert "enrolled 2 leads in nurture-fr" in result.output
    with app.app_context():
        rows = session.execute(select(Lead.email, Enrollment.trigger, Enrollment.step_key)
                               .join(Enrollment, Enrollment.lead_id == Lead.id)
                               .where(Enrollment.campaign == "nurture-fr").order_by(Lead.email)).all()
        assert rows == [(LEA, "manual", "bienvenue"), ("marc@boulangeries.fr", "manual", "bienvenue")]

    again = runner.invoke(args=["campaigns", "enroll", "nurture-fr", "--existing"])
    assert again.exit_code == 0 and "enrolled 0 leads in nurture-fr" in again.output
    with app.app_context():
        assert session.execute(select(func.count()).select_from(Enrollment)
                               .where(Enrollment.campaign == "nurture-fr")).scalar() == 2
        run_due(MONDAY_10_PARIS)
        assert sorted(m.recipient for m in session.execute(select(Mail).where(Mail.campaign == "nurture-fr"))
                      .scalars()) == [LEA, "marc@boulangeries.fr"]
        assert sent("gone@boulangeries.fr") == []


def test_enroll_existing_needs_a_known_campaign_and_the_flag(app):
    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["campaigns", "enroll", "nurture-xx", "--existing"])
    assert unknown.exit_code != 0 and "no campaign 'nurture-xx'" in unknown.output
    assert runner.invoke(args=["campaigns", "enroll", "nurture-fr"]).exit_code != 0
