"""axe-core, from npm, injected into a page by the browser tests: no serious
or critical violation is allowed."""
from pathlib import Path

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """Run axe on the page as it is now; return the violations of these impacts."""
    if not AXE.exists():
        raise RuntimeError("axe-core is missing: run `npm install` (make test does)")
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def assert_accessible(page) -> None:
    problems = axe_violations(page)
    summary = "\n".join(f"{v['impact']}: {v['id']}: {v['help']} ({len(v['nodes'])} nodes: "
                        f"{', '.join(str(n['target']) for n in v['nodes'][:3])})" for v in problems)
    assert not problems, f"axe found serious/critical violations on {page.url}:\n{summary}"


def assert_page_in(page, url: str, lang: str) -> None:
    """Open a page: it must be in this language and pass axe."""
    page.goto(url)
    assert page.locator("html").get_attribute("lang") == lang
    assert_accessible(page)
