"""Blueprint `leads`: the marketer's and the salesperson's workspace.

The leads list (search, filters, keyset pages, CSV export), a lead's page
(timeline, notes, owner, stage, campaigns) and the CSV import, from the UI
and from `leadflow leads import FILE.csv`.

    listing.py   filters and keyset pagination: query building only
    views.py     the pages and actions
    importer.py  reading a CSV, judging each row like a form post, the CLI
"""
from flask import Blueprint

bp = Blueprint("leads", __name__, cli_group="leads")

# Routes and the CLI command attach themselves to bp.
from . import importer, views  # noqa: E402,F401
