"""campaigns/*.yaml: the demo campaigns load, `leadflow check` passes, and a
broken campaign names its file, line and key without stopping the others."""
import shutil
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT
from app.definitions import DefinitionError
from app.nurture.campaigns import load_all, load_campaign

CAMPAIGNS = PROJECT_ROOT / "campaigns"
EN = (CAMPAIGNS / "nurture-en.yaml").read_text(encoding="utf-8")


@pytest.fixture
def campaigns_dir(tmp_path) -> Path:
    """An empty directory named `campaigns`, as errors name `campaigns/<file>`."""
    directory = tmp_path / "campaigns"
    directory.mkdir()
    return directory


def edited(old: str, new: str, text: str = EN) -> str:
    assert text.count(old) == 1, f"the demo campaign changed: {old!r} is not there once"
    return text.replace(old, new)


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(lines) >= occurrence, f"{marker!r} not in the edited campaign"
    return lines[occurrence - 1]


# --- the demo campaigns --------------------------------------------------------------

def test_demo_campaigns_load():
    campaigns, errors = load_all(CAMPAIGNS)
    assert errors == []
    assert sorted(campaigns) == ["nurture-en", "nurture-fr"]  # scoring.yaml and sales.yaml are not campaigns
    fr = campaigns["nurture-fr"]
    assert fr.definition.language == "fr" and fr.first_step == "bienvenue"
    assert fr.path.endswith("campaigns/nurture-fr.yaml")
    assert set(fr.definition.triggers) == {"lead_accepted", "stage:recycled"}
    assert (fr.definition.reentry.policy, fr.definition.reentry.days) == ("after", 7)
    assert fr.following("bienvenue") == "pause-1" and fr.following("fin") == "relance-courte"
    en = campaigns["nurture-en"]
    # the two versions have the same shape
    assert [s.kind for s in en.definition.steps] == [s.kind for s in fr.definition.steps]
    assert {g.stage or g.event for g in en.definition.goals} == {"mql", "sql", "demo_requested", "email_replied"}


def test_leadflow_check_passes_on_the_shipped_definitions(app):
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "all definitions are valid" in result.output


# --- broken campaigns: file, line and key ------------------------------------------------

BROKEN = {
    "goto-unknown": (edited("{goto: nudge}", "{goto: nowhere}"), "goto: nowhere", 1,
                     "steps[2].branch[2].goto", "unknown step 'nowhere'"),
    "next-unknown": (edited("    wait: {days: 4}\n", "    wait: {days: 4}\n    next: nowhere\n"), "next: nowhere", 1,
                     "steps[4].next", "unknown step 'nowhere'"),
    "send-and-wait": (edited("  - key: wait-1\n    wait: {days: 3}\n",
                             "  - key: wait-1\n    wait: {days: 3}\n    send: {template: nurture/en/guide, "
                             "subject: Hi}\n"), "key: wait-1", 1,
                      "steps[1]", "exactly one of send, wait, branch, exit; got send, wait"),
    "no-kind": (edited("  - key: done\n    exit: true\n", "  - key: done\n"), "key: done", 1,
                "steps[8]", "got none"),
    "unknown-trigger": (edited('triggers: [lead_accepted, "stage:recycled"]',
                               'triggers: [lead_accepted, "stage:recyled"]'), "triggers:", 1,
                        "triggers", "unknown trigger 'stage:recyled'"),
    "tests-a-wait": (edited("{when: {opened: welcome}, goto: guide}", "{when: {opened: wait-1}, goto: guide}"),
                     "opened: wait-1", 1, "steps[2].branch[1].when.opened",
                     "'wait-1', which is not a send step"),
    "duplicate-step": (edited("  - key: wait-3\n", "  - key: wait-2\n"), "key: wait-2", 2,
                       "steps[6].key", "step keys must be unique: 'wait-2'"),
    "window-backwards": (edited('start: "09:00", end: "18:00"', 'start: "18:00", end: "09:00"'), "window:", 1,
                         "window", "start must be before end"),
    "window-hour-25": (edited('end: "18:00"', 'end: "25:00"'), "window:", 1, "window.end", "time"),
    "window-unquoted": (edited('start: "09:00", end: "18:00"', "start: 10:00, end: 17:30"), "window:", 1,
                        "window.start", 'write times in quotes, "10:00"'),
    "window-no-day": (edited("days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fry]"), "window:", 1,
                      "window.days[4]", "'fri'"),
    "unknown-audience-stage": (edited("stages: [lead, recycled]", "stages: [lead, recyled]"), "stages:", 1,
                               "audience.stages", "unknown stage(s): recyled"),
    "unknown-goal-stage": (edited("  - {stage: sql}", "  - {stage: sqll}"), "stage: sqll", 1, "goals[1]",
                           "unknown stage 'sqll'"),
    "typo-in-step": (edited("    send: {template: nurture/en/nudge", "    sned: {template: nurture/en/nudge"),
                     "sned:", 1, "steps[9].sned", "Extra inputs are not permitted"),
    "branch-without-otherwise": (edited("      - {goto: done}\n", ""), "key: second-chance", 1, "steps[11]",
                                 "otherwise"),
    "bad-until": (edited("    wait: {days: 4}", '    wait: {until: {day: [tue], at: "10:00"}}'), "until:", 1,
                  "steps[4].wait", "until is written"),
    "unquoted-until": (edited("    wait: {days: 4}", "    wait: {until: {days: [tue], at: 10:00}}"), "until:", 1,
                       "steps[4].wait.until_time", '"10:00"'),
    "no-sender": (edited('sender: "Camille at leadflow <camille@leadflow.example>"\n', ""), "name:", 1, "sender",
                  "Field required"),
    "bad-template-name": (edited("template: nurture/en/guide", "template: ../../etc/passwd"), "../../etc/passwd", 1,
                          "steps[3].send.template", "pattern"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_campaign_names_file_line_and_key(campaigns_dir, name):
    text, marker, occurrence, key, problem = BROKEN[name]
    (campaigns_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_campaign(campaigns_dir / f"{name}.yaml")
    error = caught.value
    line = line_of(text, marker, occurrence)
    assert (error.path, error.line, error.key) == (f"campaigns/{name}.yaml", line, key), str(error)
    assert str(error).startswith(f"campaigns/{name}.yaml:{line}: {key}: ")
    assert problem in str(error)
    assert str(campaigns_dir) not in str(error)  # never the machine's absolute path


def test_invalid_yaml_names_its_line(campaigns_dir):
    text = edited("    wait: {days: 4}\n", "    wait: {days: 4\n")
    (campaigns_dir / "unclosed.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_campaign(campaigns_dir / "unclosed.yaml")
    assert str(caught.value).startswith("campaigns/unclosed.yaml:")
    assert "invalid YAML" in str(caught.value) and caught.value.line is not None
    assert caught.value.line >= line_of(text, "wait: {days: 4")


@pytest.mark.parametrize("body, problem", [
    ("", "mapping"), ("- just\n- a list\n", "mapping"), ("name: x\n", "Field required"),
])
def test_not_a_campaign_at_all(campaigns_dir, body, problem):
    (campaigns_dir / "odd.yaml").write_text(body, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_campaign(campaigns_dir / "odd.yaml")
    assert str(caught.value).startswith("campaigns/odd.yaml") and problem in str(caught.value)


def test_file_name_must_be_a_slug(campaigns_dir):
    (campaigns_dir / "Nurture EN.yaml").write_text(EN, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_campaign(campaigns_dir / "Nurture EN.yaml")
    assert "campaigns/Nurture EN.yaml" in str(caught.value) and "slug" in str(caught.value)


def test_several_problems_are_all_reported(campaigns_dir):
    text = edited("{goto: nudge}", "{goto: nowhere}", edited("{goto: done}", "{goto: nowhere-else}"))
    (campaigns_dir / "two.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_campaign(campaigns_dir / "two.yaml")
    message = str(caught.value)
    assert "'nowhere'" in message and "'nowhere-else'" in message
    assert f"(line {line_of(text, 'nowhere-else')})" in message


def test_a_key_written_twice_is_an_error(campaigns_dir):
    text = edited("topic: tips\n", "topic: tips\ntopic: conseils\n")
    (campaigns_dir / "twice.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_campaign(campaigns_dir / "twice.yaml")
    assert caught.value.line == line_of(text, "topic: conseils") and "topic" in str(caught.value)


# --- one broken file does not stop the others -------------------------------------------

def test_one_broken_file_does_not_stop_the_others(campaigns_dir):
    for name in ("nurture-en.yaml", "nurture-fr.yaml", "scoring.yaml", "sales.yaml"):
        shutil.copy(CAMPAIGNS / name, campaigns_dir / name)
    (campaigns_dir / "broken.yaml").write_text(edited("{goto: nudge}", "{goto: nowhere}"), encoding="utf-8")
    (campaigns_dir / "garbage.yaml").write_bytes(b"\xff\xfe not utf-8 \x00")
    (campaigns_dir / "notes.txt").write_text("not a campaign", encoding="utf-8")
    campaigns, errors = load_all(campaigns_dir)
    assert sorted(campaigns) == ["nurture-en", "nurture-fr"]
    assert sorted(e.path for e in errors) == ["campaigns/broken.yaml", "campaigns/garbage.yaml"]
    assert any("steps[2].branch[2].goto" in str(e) for e in errors)


# --- `leadflow check` on a campaigns directory of our own --------------------------------

@pytest.fixture
def own_campaigns(campaigns_dir):
    for name in ("nurture-fr.yaml", "scoring.yaml", "sales.yaml"):
        shutil.copy(CAMPAIGNS / name, campaigns_dir / name)
    return campaigns_dir


def test_check_reports_a_missing_template(app_factory, pg_url, own_campaigns):
    (own_campaigns / "nurture-en.yaml").write_text(
        edited("template: nurture/en/nudge", "template: nurture/en/nudge-v2"), encoding="utf-8")
    app = app_factory(pg_url, CAMPAIGNS_DIR=str(own_campaigns))
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1
    assert "campaigns/nurture-en.yaml: steps.nudge.send.template: no template " \
           "templates/emails/nurture/en/nudge-v2.html" in result.stderr
    assert "nudge-v2.txt" in result.stderr
    assert "nurture-fr" not in result.output and "all definitions are valid" not in result.output


def test_check_reports_a_broken_campaign_with_its_line(app_factory, pg_url, own_campaigns):
    text = edited("{when: {clicked: welcome}, goto: case-study}", "{when: {clicked: wait-1}, goto: case-study}")
    (own_campaigns / "nurture-en.yaml").write_text(text, encoding="utf-8")
    app = app_factory(pg_url, CAMPAIGNS_DIR=str(own_campaigns))
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1
    assert f"campaigns/nurture-en.yaml:{line_of(text, 'clicked: wait-1')}: steps[2].branch[0].when.clicked:" \
        in result.stderr


def test_check_passes_on_a_copied_directory(app_factory, pg_url, own_campaigns):
    shutil.copy(CAMPAIGNS / "nurture-en.yaml", own_campaigns / "nurture-en.yaml")
    app = app_factory(pg_url, CAMPAIGNS_DIR=str(own_campaigns))
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 0, result.output
