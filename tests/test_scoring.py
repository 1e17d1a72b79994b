import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from app.definitions import DefinitionError
from app.qualify.scoring import (EventData, LeadData, ScoringModel, apply_event, compute, creates_lead,
                                 crosses_mql, event_points, fingerprint, fit_points, initial_state,
                                 load_model, state_total, temperature)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
BARE = LeadData({})


@pytest.fixture(scope="module")
def model():
    return load_model()


def ev(kind, at=T0, machine=False, **properties):
    return EventData(kind, at, properties, machine)


def main_total(model, events, lead=BARE, as_of=T0):
    return compute(model, lead, events, as_of)["main"].total


def fold(model, name, events):
    state = initial_state()
    for event in events:
        _, state = apply_event(model, name, state, event)
    return state


WORKED = [ev("page_visited"), ev("page_visited"), ev("article_read", article="why-crm"),
          ev("linkedin_followed"), ev("newsletter_subscribed"), ev("asset_downloaded", asset="ebook"),
          ev("webinar_registered", webinar="w1")]


# ---------------------------------------------------------------- demo model

def test_worked_example_gives_51_warm_linkedin(model):
    result = compute(model, BARE, WORKED, T0)["main"]
    assert result.total == 51 and result.behaviour == 51 and result.fit == 0
    assert result.mql and (result.temperature, result.channel) == ("warm", "linkedin")
    assert dict(result.breakdown) == {"page_visited": 1, "article_read": 5, "linkedin_followed": 5,
                                      "newsletter_subscribed": 10, "asset_downloaded": 15,
                                      "webinar_registered": 15}
    before = main_total(model, WORKED[:-1])
    assert before == 36 and crosses_mql(model, before, result.total)


def test_worked_example_incrementally(model):
    state, totals = initial_state(), []
    for event in WORKED:
        _, state = apply_event(model, "main", state, event)
        totals.append(state_total(model, "main", state, 0.0, T0))
    assert totals == [1, 1, 6, 11, 21, 36, 51]
    assert [i for i in range(1, 7) if crosses_mql(model, totals[i - 1], totals[i])] == [6]
    assert json.loads(json.dumps(state)) == state


def test_first_visit_only_scores_once(model):
    points, state = apply_event(model, "main", initial_state(), ev("page_visited"))
    assert points == 1
    later = ev("page_visited", T0 + timedelta(days=3))
    assert event_points(model, "main", state, later)[:2] == (0.0, "page_visited")
    assert main_total(model, [ev("page_visited")] * 5) == 1


def test_once_per_key(model):
    opens = [ev("email_opened", message_id=m) for m in ("m1", "m1", "m2", "m1", "m3")]
    assert main_total(model, opens) == 3
    clicks = [ev("link_clicked", message_id="m1", url="/a"), ev("link_clicked", message_id="m1", url="/a"),
              ev("link_clicked", message_id="m1", url="/b"), ev("link_clicked", message_id="m2", url="/a")]
    assert main_total(model, clicks) == 9


def test_cap_bounds_a_rule(model):
    assert main_total(model, [ev("form_submitted")] * 5) == 30
    assert main_total(model, [ev("email_opened", message_id=str(i)) for i in range(25)]) == 10
    partial = ScoringModel.model_validate({"mql_threshold": 50, "scores": {"main": {"behaviour": [
        {"kind": "x", "points": 4, "cap": 10}, {"kind": "y", "points": -4, "cap": 6}]}}})
    assert main_total(partial, [ev("x")] * 4) == 10          # 4 + 4 + 2 + 0
    assert main_total(partial, [ev("y")] * 3) == -6


def test_property_matching_first_rule_wins(model):
    assert main_total(model, [ev("asset_downloaded", asset="pricing-sheet")]) == 20
    assert main_total(model, [ev("asset_downloaded", asset="PRICING-SHEET ")]) == 20
    assert main_total(model, [ev("asset_downloaded", asset="ebook")]) == 15
    assert main_total(model, [ev("asset_downloaded")]) == 15
    both = compute(model, BARE, [ev("asset_downloaded", asset="pricing-sheet"),
                                 ev("asset_downloaded", asset="ebook"), ev("asset_downloaded", asset="ebook")], T0)
    assert both["main"].total == 35
    assert dict(both["main"].breakdown) == {"asset_downloaded[asset=pricing-sheet]": 20, "asset_downloaded": 15}


def test_machine_events_score_nothing_by_default(model):
    assert main_total(model, [ev("email_opened", machine=True, message_id="m1")]) == 0
    assert event_points(model, "main", initial_state(), ev("demo_requested", machine=True))[0] == 0
    # and they don't use up the once: the real open still counts
    assert main_total(model, [ev("email_opened", machine=True, message_id="m1"),
                              ev("email_opened", message_id="m1")]) == 1
    opt_in = ScoringModel.model_validate({"mql_threshold": 1, "scores": {"main": {"behaviour": [
        {"kind": "bounce", "points": -5, "include_machine": True}]}}})
    assert main_total(opt_in, [ev("bounce", machine=True)]) == -5


def test_negative_points(model):
    assert main_total(model, WORKED + [ev("unsubscribed"), ev("unsubscribed")]) == 31
    assert main_total(model, [ev("email_bounced")]) == -50


def test_decay_halves_behaviour_not_fit(model):
    lead = LeadData({"country": "FR", "job_title": "Directeur marketing", "email": "a@gmail.com"})
    now = compute(model, lead, WORKED, T0)["main"]
    later = compute(model, lead, WORKED, T0 + timedelta(days=90))["main"]
    assert now.fit == later.fit == 10 + 15 - 5
    assert later.behaviour == pytest.approx(25.5, rel=1e-12)
    assert later.total == pytest.approx(45.5) and not later.mql and later.temperature is None
    state = fold(model, "main", WORKED)
    assert state_total(model, "main", state, 20.0, T0 + timedelta(days=180)) == pytest.approx(20 + 51 / 4)


def test_decay_is_never_negative_time(model):
    """Asked before the newest event, the score is its value at that event."""
    events = [ev("form_submitted", T0), ev("form_submitted", T0 + timedelta(days=90))]
    assert main_total(model, events, as_of=T0) == pytest.approx(15)
    assert state_total(model, "main", fold(model, "main", events), 0.0, T0) == pytest.approx(15)


def test_late_events_match_full_recomputation(model):
    events = [ev("form_submitted", T0 + timedelta(days=30)), ev("article_read", T0, article="a"),
              ev("demo_requested", T0 + timedelta(days=10))]
    as_of = T0 + timedelta(days=45)
    expected = 10 * 2 ** (-15 / 90) + 5 * 2 ** (-45 / 90) + 40 * 2 ** (-35 / 90)
    assert main_total(model, events, as_of=as_of) == pytest.approx(expected, rel=1e-12)
    assert state_total(model, "main", fold(model, "main", events), 0.0, as_of) == pytest.approx(expected, rel=1e-12)


def test_fit_points(model):
    assert fit_points(model, "main", BARE) == []
    lead = LeadData({"country": "de", "company_size": "1000+", "job_title": "Head of Sales",
                     "email": "x@ACME.com", "segment": "SaaS", "annual_revenue": "1M-10M"})
    assert fit_points(model, "main", lead) == [("country in EU", 5), ("company_size in [1000+]", 15),
                                               ("annual_revenue in [1M-10M]", 5), ("segment in [saas, industry]", 5),
                                               ("senior job title", 15)]
    # per attribute, the first matching rule counts: FR is in both lists
    assert fit_points(model, "main", LeadData({"country": "FR"})) == [("country in [FR, BE, CH, LU]", 10)]
    assert fit_points(model, "main", LeadData({"job_title": "Team lead", "email": "x@gmail.com"})) == [
        ("manager job title", 5), ("email_domain in free_mail", -5)]


def test_several_scores(model):
    lead = LeadData({"segment": "industry"})
    events = WORKED + [ev("asset_downloaded", asset="product-b-datasheet"),
                       ev("page_visited", section="product-b"), ev("page_visited", section="product-b")]
    results = compute(model, lead, events, T0)
    assert set(results) == {"main", "product_b"}
    assert results["main"].total == 51 + 15 + 5       # the datasheet is just another asset for main
    assert results["product_b"].total == 20 + 2 + 2 + 10
    assert results["product_b"].temperature is None and not results["product_b"].mql
    assert state_total(model, "product_b", fold(model, "product_b", events), 10.0, T0) == 34


def test_temperature_and_crosses_mql(model):
    assert temperature(model, 49.99) == (None, None)
    assert temperature(model, 50) == ("warm", "linkedin")
    assert temperature(model, 80) == ("hot", "email")
    assert temperature(model, 250) == ("very_hot", "phone")
    assert crosses_mql(model, 49, 50) and crosses_mql(model, -10, 120)
    assert not crosses_mql(model, 50, 60) and not crosses_mql(model, 10, 49.9) and not crosses_mql(model, 60, 40)


def test_creates_lead(model):
    assert creates_lead(model, "newsletter_subscribed") and creates_lead(model, "webinar_registered")
    assert not creates_lead(model, "page_visited") and not creates_lead(model, "no_such_kind")


def test_state_is_not_modified_and_fingerprint_tracks_the_model(model, tmp_path):
    state = initial_state()
    apply_event(model, "main", state, ev("page_visited"))
    assert state == initial_state()
    edited = tmp_path / "scoring.yaml"
    edited.write_text(load_text().replace("points: 1, once: lead", "points: 2, once: lead"))
    assert fingerprint(load_model(edited)) != fingerprint(model) == fingerprint(load_model())


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        EventData("page_visited", datetime(2025, 1, 1), {})


# ---------------------------------------------------------------- incremental == full

KINDS = ["a", "b", "c"]

rules = st.builds(
    lambda kind, points, once, per, cap, where, machine: {
        "kind": kind, "points": points, "once": once, "cap": cap, "include_machine": machine,
        **({"per": per} if once == "key" else {}), **({"where": {"p": where}} if where else {})},
    st.sampled_from(KINDS), st.floats(-60, 60).map(lambda x: round(x, 3)),
    st.sampled_from(["every", "lead", "key"]), st.sampled_from(["p", ["p", "q"]]),
    st.none() | st.floats(0.5, 100), st.none() | st.sampled_from(["x", ["x", "y"]]), st.booleans())

scores = st.builds(
    lambda rule_list, half_life: {"half_life_days": half_life,
                                  "behaviour": [{**r, "id": f"r{i}"} for i, r in enumerate(rule_list)],
                                  "fit": [{"attribute": "country", "values": ["FR"], "points": 7}]},
    st.lists(rules, max_size=6), st.none() | st.floats(0.05, 1000))

models = st.builds(lambda main, other: ScoringModel.model_validate(
    {"mql_threshold": 50, "scores": {"main": main, "other": other}}), scores, scores)

events = st.lists(st.builds(
    lambda kind, minutes, p, q, machine: EventData(
        kind, T0 + timedelta(minutes=minutes), {k: v for k, v in (("p", p), ("q", q)) if v is not None}, machine),
    st.sampled_from(KINDS + ["zzz"]), st.integers(0, 60 * 24 * 400), st.none() | st.sampled_from("xyz"),
    st.none() | st.sampled_from("12"), st.booleans()), max_size=40)


@settings(max_examples=300, deadline=None)
@given(models, events, st.integers(-60 * 24 * 30, 60 * 24 * 500), st.sampled_from([{}, {"country": "fr"}]))
def test_incremental_equals_full_recomputation(model, event_list, as_of_minutes, attributes):
    lead, as_of = LeadData(attributes), T0 + timedelta(minutes=as_of_minutes)
    full = compute(model, lead, event_list, as_of)
    for name in model.scores:
        state = initial_state()
        for event in event_list:
            _, state = apply_event(model, name, json.loads(json.dumps(state)), event)
        fit = sum(points for _, points in fit_points(model, name, lead))
        incremental = state_total(model, name, state, fit, as_of)
        assert math.isclose(incremental, full[name].total, rel_tol=1e-6, abs_tol=1e-9), (name, incremental, full[name])


# ---------------------------------------------------------------- load errors

def load_text():
    from app.qualify.scoring import DEFAULT_PATH
    return DEFAULT_PATH.read_text(encoding="utf-8")


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line and not line.startswith("#"))


@pytest.mark.parametrize("old, new, needle, key, problem", [
    ("{kind: linkedin_followed, points: 5, once: lead}", "{kind: linkedin_followed, points: 5, onse: lead}",
     "onse", "scores.main.behaviour[2].onse", "Extra inputs"),
    ("half_life_days: 90", "half_life_days: -3", "half_life_days: -3", "scores.main.half_life_days",
     "greater than 0"),
    ("hot:      {min: 75,", "hot:      {min: 45,", "tiers:", "tiers", "tiers must ascend"),
    ("mql_score: main", "mql_score: mian", "mql_score", "mql_score", "unknown score 'mian'"),
    ("{kind: email_opened, points: 1, once: key, per: message_id, cap: 10}",
     "{kind: email_opened, points: 1, once: key, cap: 10}", "kind: email_opened", "scores.main.behaviour[9]",
     "needs `per`"),
    ("in_list: free_mail", "in_list: freemail", "in_list: freemail", "scores.main.fit[10].in_list",
     "unknown list 'freemail'"),
    ("matches: '(?i)\\b(manager", "matches: '(?i)\\b((manager", "((manager", "scores.main.fit[9].matches",
     "invalid regular expression"),
    ("{kind: form_submitted, points: 10, cap: 30}", "{kind: Form Submitted, points: 10, cap: 30}",
     "Form Submitted", "scores.main.behaviour[7].kind", "pattern"),
])
def test_load_errors_name_file_line_and_key(tmp_path, old, new, needle, key, problem):
    text = load_text()
    assert old in text
    text = text.replace(old, new)
    path = tmp_path / "scoring.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_model(path)
    message = str(caught.value)
    assert f"scoring.yaml:{line_of(text, needle)}: {key}: " in message
    assert problem in message
