"""Flask extensions, created unbound and attached in create_app()."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf import CSRFProtect

# Flask-Limiter: well-kept, Redis-backed when REDIS_URL is set, and falls back
# to memory when Redis is down so that a submission never fails for it.
limiter = Limiter(key_func=get_remote_address, default_limits=[],
                  in_memory_fallback_enabled=True, swallow_errors=True,
                  headers_enabled=True)
csrf = CSRFProtect()
