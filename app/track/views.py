"""Blueprint `track`: open pixel, click redirect, page-visit beacon."""
from flask import Blueprint

bp = Blueprint("track", __name__)
