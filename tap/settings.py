"""Tap settings: one module, everything from the environment (django-environ).

`.env.example` lists every variable. `make run` writes a local `.env`; production sets real
environment variables. Bad values fail loudly at start-up.
"""

from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
TESTING = env.bool("TAP_TESTING", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL used in emails (links must work outside a request).
TAP_BASE_URL = env.str("TAP_BASE_URL", default="http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    # `tap` first: its `migrate` and `flush` commands replace Django's (they use the owner role).
    "tap",
    "tap.orgs",
    "campaigns",
    "conversations",
    "metrics",
    "tap.apps.TapAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rules.apps.AutodiscoverRulesConfig",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /healthz and /readyz, answered before sessions and the tenant transaction (tap/views.py).
    "tap.views.ProbeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tap.logging.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Innermost: owns the request's transaction and the tenant context (tap/tenancy.py).
    "tap.tenancy.TenancyMiddleware",
]

ROOT_URLCONF = "tap.urls"
WSGI_APPLICATION = "tap.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tap.orgs.context_processors.navigation",
            ],
        },
    },
]

# --- Databases -----------------------------------------------------------------------------
# Three connections to one database, as three roles (README, "Database roles"):
#   default  the app role: owns nothing, no BYPASSRLS — every web request and worker task
#   service  BYPASSRLS: the Django admin and cross-organisation system jobs only
#   owner    the migrator, acting as the table owner: `migrate` and test set-up only
DATABASES = {
    "default": env.db("DATABASE_URL"),
    "service": env.db("DATABASE_SERVICE_URL", default=env.str("DATABASE_URL")),
    "owner": env.db("DATABASE_OWNER_URL", default=env.str("DATABASE_URL")),
}
for _alias, _db in DATABASES.items():
    _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})["connect_timeout"] = 5
# Each view runs in a savepoint inside the request transaction that TenancyMiddleware owns:
# a view that fails is rolled back, and its error page still renders in the transaction.
DATABASES["default"]["ATOMIC_REQUESTS"] = True
# The Django admin's views run in `staff_scope`, where this sends every query to `service`.
DATABASE_ROUTERS = ["tap.tenancy.StaffRouter"]
# Metrics ingestion stages each fold's rows (about 8 MB) in temporary tables: room for them in
# the session's local buffers, not spilled to temporary files. PostgreSQL takes this only
# before a session first touches a temporary table, so at connection time; the buffers are
# allocated as used, so other sessions pay nothing.
# libpq ignores PGOPTIONS once `options` is given: keep it (and the URL's), after ours, so a
# deployment's own settings still apply and win.
_options = DATABASES["default"]["OPTIONS"]
_given = [env.str("PGOPTIONS", default=""), _options.get("options", "")]
_options["options"] = " ".join(filter(None, ["-c temp_buffers=64MB", *_given]))
DATABASES["owner"]["CONN_MAX_AGE"] = 0
DATABASES["owner"]["OPTIONS"]["assume_role"] = env.str("TAP_DB_OWNER_ROLE", default="tap_owner")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "orgs.User"
AUTHENTICATION_BACKENDS = [
    "rules.permissions.ObjectPermissionBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Redis: cache (rate limits) and Celery broker ------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "tap",
        # A Redis outage must never hang a page: short timeouts, and callers fail open.
        "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    # Longer than the longest task (TAP_QUEUE_TIME_LIMITS) plus its back-off.
    "visibility_timeout": 2 * 3600,
    "health_check_interval": 25,
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = 15 * 60
CELERY_TASK_TIME_LIMIT = 20 * 60
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "outbox-purge": {"task": "tap.outbox_purge", "schedule": 6 * 3600},
    # Reminders and close dates: a sweeper over due rows, so a missed tick is caught up.
    "campaigns-sweep": {"task": "campaigns.sweep", "schedule": 5 * 60},
    "conversations-sweep": {"task": "conversations.sweep", "schedule": 15 * 60},
    # Daily: re-analyse active campaigns that have new or changed conversations.
    "analysis-daily": {"task": "conversations.analysis_daily", "schedule": 24 * 3600},
    # Daily: delete transcripts past each organisation's retention (tap/orgs/tasks.py).
    "orgs-retention": {"task": "orgs.retention_sweep", "schedule": 24 * 3600},
}

# Soft and hard time limits per queue, in seconds (tasks fed by the outbox take their
# queue's). A soft limit raises inside the task, which fails and is retried by the outbox;
# the hard limit kills the process. The `ai` queue runs on threads, which Celery cannot stop:
# an interviewer reply keeps its calls within the soft limit itself (tap.ai.reply_budget_seconds).
TAP_QUEUE_TIME_LIMITS = {
    "default": (300, 360),
    "email": (60, 90),
    "ai": (110, 130),
    "analysis": (1500, 1800),
    "ingest": (1500, 1800),
}
# The outbox (tap/outbox.py): a published job holds a lease of its queue's hard limit plus
# this margin; when it runs out (the worker was killed) the job is published again. Set
# TAP_OUTBOX_LEASE_SECONDS to use one lease for every queue (the fault tests shorten it).
TAP_OUTBOX_LEASE_MARGIN_SECONDS = env.int("TAP_OUTBOX_LEASE_MARGIN_SECONDS", default=30)
TAP_OUTBOX_LEASE_SECONDS = env.int("TAP_OUTBOX_LEASE_SECONDS", default=0)
TAP_OUTBOX_MAX_ATTEMPTS = env.int("TAP_OUTBOX_MAX_ATTEMPTS", default=5)
# Email: 14 attempts, the back-off (2 s doubling to 10 min) spreads them over about an hour, so
# a mail server down or throttling for a while delays invitations instead of failing them.
TAP_OUTBOX_MAX_ATTEMPTS_BY_QUEUE = {
    "email": env.int("TAP_OUTBOX_MAX_ATTEMPTS_EMAIL", default=14),
}

# --- Auth ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
PASSWORD_RESET_TIMEOUT = 3 * 3600
TAP_MEMBER_INVITATION_DAYS = 7
# Login attempts per (client, email) and per client, in a sliding window of this many seconds.
TAP_LOGIN_RATE = env.str("TAP_LOGIN_RATE", default="10/300")
TAP_LOGIN_RATE_PER_IP = env.str("TAP_LOGIN_RATE_PER_IP", default="50/300")
# Failed logins per account from anywhere: guesses spread over many addresses (a botnet, an
# IPv6 block) are slowed too. Only failures count: the owner is held only while someone guesses.
TAP_LOGIN_FAILURES_PER_ACCOUNT = env.str("TAP_LOGIN_FAILURES_PER_ACCOUNT", default="20/900")
# Sign-up attempts per client: "already registered" answers must not be free to enumerate.
# Per client IP, so an office behind one address signing up together needs room.
TAP_SIGNUP_RATE = env.str("TAP_SIGNUP_RATE", default="100/3600")
# Unknown participant-link lookups per client, before 429 (guessing tokens).
TAP_PARTICIPANT_LINK_RATE = env.str("TAP_PARTICIPANT_LINK_RATE", default="30/300")
# Chat messages one participant may post, before a polite "wait" (a reply comes in between).
TAP_PARTICIPANT_POST_RATE = env.str("TAP_PARTICIPANT_POST_RATE", default="20/60")
# Metrics: requests to the push API per client address, and uploads per person and org.
TAP_METRICS_API_RATE = env.str("TAP_METRICS_API_RATE", default="60/60")
TAP_METRICS_UPLOAD_RATE = env.str("TAP_METRICS_UPLOAD_RATE", default="30/3600")
# The proxy header that carries the real client address, when behind a trusted proxy.
TAP_CLIENT_IP_HEADER = env.str("TAP_CLIENT_IP_HEADER", default="")

# --- Email ---------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
if EMAIL_CONFIG.get("EMAIL_FILE_PATH"):
    # filemail://.data/mail — relative to the project, wherever the process runs from.
    EMAIL_FILE_PATH = str(BASE_DIR / EMAIL_CONFIG["EMAIL_FILE_PATH"])
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Tap <tap@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = 10

# --- I18N, static --------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG or TESTING
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security ------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=not DEBUG)
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# No inline script or style anywhere: htmx and Bootstrap are vendored under static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "object-src": [NONE],
    }
}

# --- AI ------------------------------------------------------------------------------------
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
TAP_AI_MODEL = env.str("TAP_AI_MODEL", default="claude-sonnet-5-5")
TAP_AI_TIMEOUT_SECONDS = env.float("TAP_AI_TIMEOUT_SECONDS", default=30.0)
# Conversations idle this long are marked abandoned (a new message reopens them).
TAP_ABANDON_AFTER_HOURS = env.int("TAP_ABANDON_AFTER_HOURS", default=72)
# Budgets against runaway cost: per conversation (turns, tokens) and per organisation per day.
TAP_MAX_TURNS_PER_CONVERSATION = env.int("TAP_MAX_TURNS_PER_CONVERSATION", default=20)
TAP_MAX_TOKENS_PER_CONVERSATION = env.int("TAP_MAX_TOKENS_PER_CONVERSATION", default=100_000)
TAP_ORG_DAILY_TOKEN_BUDGET = env.int("TAP_ORG_DAILY_TOKEN_BUDGET", default=5_000_000)
# Campaign analysis: the largest synthesis input (estimated tokens) sent in one request —
# above it the campaign is reduced in stages (map-reduce) — parallel extraction requests,
# and prices (USD per million tokens) for the recorded cost estimate.
TAP_ANALYSIS_TOKEN_BUDGET = env.int("TAP_ANALYSIS_TOKEN_BUDGET", default=120_000)
TAP_ANALYSIS_CONCURRENCY = env.int("TAP_ANALYSIS_CONCURRENCY", default=4)
TAP_AI_PRICE_INPUT_PER_MTOK = env.float("TAP_AI_PRICE_INPUT_PER_MTOK", default=3.0)
TAP_AI_PRICE_OUTPUT_PER_MTOK = env.float("TAP_AI_PRICE_OUTPUT_PER_MTOK", default=15.0)

# --- Errors to Sentry, only when SENTRY_DSN is set ----------------------------------------
# No personal data: no request bodies, cookies, headers or user details, and tokens are
# redacted from URLs (tap.logging.sentry_before_send).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    from tap.logging import sentry_before_send

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        # Stack frames' variables would carry transcripts, prompts and addresses.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=sentry_before_send,
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# --- Logging: one JSON object a line, with request / org / task ids (tap/logging.py) --------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# One INFO line per request (method, redacted path, status, duration, org) from the app.
TAP_ACCESS_LOG = env.bool("TAP_ACCESS_LOG", default=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "tap.logging.ContextFilter"},
        # Participant tokens are in /c/<token>/ paths, which Django logs on every 4xx.
        "redact_tokens": {"()": "tap.logging.RedactTokensFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context", "redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- Developer metrics (metrics/) ----------------------------------------------------------
# Uploads wait here for the ingest worker (a volume shared by web and workers in production).
TAP_METRICS_UPLOAD_DIR = env.path("TAP_METRICS_UPLOAD_DIR", default=BASE_DIR / ".data" / "uploads")
TAP_METRICS_MAX_UPLOAD_BYTES = env.int("TAP_METRICS_MAX_UPLOAD_BYTES", default=512 << 20)
# After gunzip: a small compressed file can expand without end (a gzip bomb).
TAP_METRICS_MAX_DECOMPRESSED_BYTES = env.int("TAP_METRICS_MAX_DECOMPRESSED_BYTES", default=4 << 30)
# Rejected lines kept (with line number and reason) per run; the rest are only counted.
TAP_METRICS_MAX_ERRORS = env.int("TAP_METRICS_MAX_ERRORS", default=200)
CELERY_BEAT_SCHEDULE["metrics-sweep"] = {"task": "metrics.sweep", "schedule": 10 * 60}
