"""The nurture engine (issue 4). Until it lands, a tick does nothing."""


def run_due(now=None) -> int:
    return 0
