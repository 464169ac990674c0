"""Settings for the loan-quote example, all from environment variables (no database).

LOAN_MEMO           how the quote is memoized (see loan_site/memo.py):
                      none          compute every time
                      seed          story A's decorator: f"{func.__name__}_{hash(input_string)}"
                                    keys through Django's cache framework (RedisCache)
                      sha1          the seed's fix: sha1(input_string) keys, same decorator
                      larder        @larder.memoize (configured by LARDER_CACHE)
                      larder_cache  the sha1 decorator unchanged, with CACHES["default"] =
                                    larder.django.LarderCache
LOAN_REDIS_URL      Redis of Django's RedisCache (default redis://127.0.0.1:6379/0); also the
                    default of LARDER_CACHE and LOAN_LARDER_LOCATION
LOAN_LARDER_LOCATION  LOCATION of LarderCache (redis://…, sqlite:PATH, local:N,redis://…)
LOAN_COUNTER_URL    Redis holding the computation counter (default LOAN_REDIS_URL); a separate
                    server keeps the count when the cache's Redis is killed
LOAN_COMPUTE_MS     how long one quote takes (default 100)
LOAN_TTL            seconds a quote stays cached (default 600)
"""

import os

from django.core.exceptions import ImproperlyConfigured

MEMO_MODES = ("none", "seed", "sha1", "larder", "larder_cache")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-loan-example-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "loan_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
WSGI_APPLICATION = "loan_site.wsgi.application"

LOAN_MEMO = os.environ.get("LOAN_MEMO", "larder")
if LOAN_MEMO not in MEMO_MODES:
    raise ImproperlyConfigured(f"LOAN_MEMO={LOAN_MEMO!r}: expected one of {', '.join(MEMO_MODES)}")
LOAN_REDIS_URL = os.environ.get("LOAN_REDIS_URL", "redis://127.0.0.1:6379/0")
LOAN_COUNTER_URL = os.environ.get("LOAN_COUNTER_URL", LOAN_REDIS_URL)
LOAN_LARDER_LOCATION = os.environ.get("LOAN_LARDER_LOCATION", LOAN_REDIS_URL)
LOAN_COMPUTE_MS = int(os.environ.get("LOAN_COMPUTE_MS", "100"))
LOAN_TTL = int(os.environ.get("LOAN_TTL", "600"))

# @larder.memoize reads its tiers from LARDER_CACHE; default to the example's Redis.
os.environ.setdefault("LARDER_CACHE", LOAN_REDIS_URL)

if LOAN_MEMO == "larder_cache":
    CACHES = {
        "default": {
            "BACKEND": "larder.django.LarderCache",
            "LOCATION": LOAN_LARDER_LOCATION,
            "TIMEOUT": LOAN_TTL,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": LOAN_REDIS_URL,
            "TIMEOUT": LOAN_TTL,
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOAN_LOG_LEVEL", "WARNING")},
}
