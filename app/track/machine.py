"""Was a tracking hit made by a machine rather than the person? Pure function.

Mail security gateways fetch every link and image of a message to scan it,
mail providers proxy images, and link previewers unfurl URLs. Their hits are
recorded (flagged `machine`) but, under the default scoring model, earn no
points. Signals, strongest first:

* a HEAD request: browsers and mail clients send GET; scanners probe first;
* no user agent at all: every browser and mail client sends one;
* a known user agent (bots and crawlers, HTTP libraries, headless browsers,
  security gateways, Office's link pre-fetch, image proxies). Apple Mail
  Privacy Protection fetches images with the bare "Mozilla/5.0", which no
  real browser sends; Gmail's and Yahoo's image proxies name themselves;
* the hit came within a few seconds of sending: a person needs longer than
  that to receive, open and read; a gateway scans on delivery.
"""
import re

# Substrings, case-insensitive. "(?<!cu)bot": Cubot is a phone brand.
_MACHINE_AGENTS = re.compile("|".join([
    r"(?<!cu)bot", r"spider", r"crawl", r"slurp", r"scanner", r"facebookexternalhit",
    r"headlesschrome", r"phantomjs", r"python", r"curl/", r"wget", r"go-http-client",
    r"java/", r"okhttp", r"libwww", r"httpclient", r"node-fetch", r"axios", r"scrapy",
    # mail security gateways and link checkers
    r"barracuda", r"mimecast", r"proofpoint", r"ironport", r"forcepoint", r"symantec",
    r"messagelabs", r"trend ?micro", r"sophos", r"mcafee", r"fireeye", r"cloudmark",
    r"zscaler", r"safelinks",
    # Outlook and Office probe a link before handing it to the browser
    r"ms-office", r"microsoft office (existence|protocol) discovery",
    # image proxies (opens)
    r"googleimageproxy", r"yahoomailproxy",
]), re.IGNORECASE)

# Apple Mail Privacy Protection's prefetch announces nothing but this.
_BARE_AGENTS = {"mozilla/5.0", "mozilla/4.0"}


def machine_reason(user_agent: str | None, method: str = "GET",
                   seconds_after_send: float | None = None,
                   human_seconds: float = 5) -> str | None:
    """Why this hit looks automated, or None when it looks like a person.

    seconds_after_send: time between the message's sending and this hit
    (None when the message or its sending time is unknown); a hit sooner than
    human_seconds is a scanner's. Negative counts too: the gateway may fetch
    before our SMTP conversation has even finished."""
    if method.upper() == "HEAD":
        return "HEAD request"
    agent = (user_agent or "").strip()
    if not agent:
        return "no user agent"
    if agent.lower() in _BARE_AGENTS:
        return "bare user agent (Apple Mail Privacy Protection)"
    found = _MACHINE_AGENTS.search(agent)
    if found:
        return f"user agent ({found.group(0).lower()})"
    if seconds_after_send is not None and seconds_after_send < human_seconds:
        return f"within {human_seconds:g} s of sending"
    return None


def is_machine(*args, **kwargs) -> bool:
    return machine_reason(*args, **kwargs) is not None
