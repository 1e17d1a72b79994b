"""Blueprint `api`: /api/v1 for other systems (filled in by the tracking work)."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1", cli_group="tokens")
