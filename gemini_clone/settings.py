"""Settings for the whole project, driven by environment variables.

Every variable is listed with its default in `.env.example` and the README.
Defaults suit development; `DEBUG=false` switches to the production posture
(`manage.py check --deploy` passes with no warnings).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.logging_config import logging_settings
from gemini_clone.error_reporting import error_reporting_start

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Core -------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-secret-key-change-me-0123456789abcdefghijklmnop"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
PORT = env_int("PORT", 8000)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "phonenumber_field",
    "core",
    "accounts",
    "billing",
    "usage",
    "chatrooms",
    # Last: its admin.py registers the users' page composed from the apps above (see there).
    "gemini_clone",
]

MIDDLEWARE = [
    # Outermost, so even Django's own refusals (a bad Host header) leave /api as JSON.
    "core.middleware.ApiExceptionMiddleware",
    "core.middleware.RequestFactsMiddleware",
    "core.middleware.ApiBodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.static.StaticFilesMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "core.middleware.SiteOnlyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Only outside /api (the admin, the site's pages): the API authenticates with bearer tokens.
SITE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
# The admin's checks look for those in MIDDLEWARE; they run for the admin, from the list above
# (core/tests/test_site_middleware.py signs in to the admin through them; core/checks.py
# checks they are there).
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "gemini_clone.urls"
WSGI_APPLICATION = "gemini_clone.wsgi.application"
ASGI_APPLICATION = "gemini_clone.asgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database and cache -------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Use ./run.sh or ./test.sh, which start an embedded "
        "PostgreSQL when it is missing, or point it at your server."
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("Only PostgreSQL is supported (DATABASE_URL=postgres://...).")
# Django's PostgreSQL backend, whose pool hands out only live connections (core/postgres).
DATABASES["default"]["ENGINE"] = "core.postgres"
# The longest a request or task waits for a working connection; past it, the API answers
# 503 service_unavailable. Also libpq's limit on one attempt to connect (2 s at least).
DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 3)
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options.setdefault("connect_timeout", DB_CONNECT_TIMEOUT_SECONDS)
# Parameters travel apart from the SQL, and a statement a connection has run
# DB_PREPARE_THRESHOLD times is prepared on it: PostgreSQL then skips parsing and planning,
# which cost more than executing most of our statements (a claim: 0.4 ms of planning for
# 0.2 ms of execution). Off (client-side binding, Django's default) behind a pooler in
# transaction mode that does not track prepared statements (PgBouncer before 1.22).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
if DB_PREPARED_STATEMENTS:
    _db_options["server_side_binding"] = True
    _db_options["prepare_threshold"] = env_int("DB_PREPARE_THRESHOLD", 5)
# A connection pool per process: under ASGI each request runs on its own thread, and the
# worker runs many threads, so per-thread persistent connections would pile up.
_db_options["pool"] = {
    "min_size": env_int("DB_POOL_MIN_SIZE", 2),
    "max_size": env_int("DB_POOL_MAX_SIZE", 20),
    "timeout": DB_CONNECT_TIMEOUT_SECONDS,
    # While the database is down the pool retries in the background with a doubling pause;
    # giving up this soon keeps that pause short, and the next request starts afresh, so
    # a database that is back is used within a second or two.
    "reconnect_timeout": DB_CONNECT_TIMEOUT_SECONDS,
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The threads of a web process that may each hold a database connection (gemini_clone.asgi):
# the synchronous views', the slow views', and those running the streams' synchronous steps.
# Together they should not outnumber the pool above (core.checks warns).
WEB_THREADS = env_int("WEB_THREADS", 8)
WEB_SLOW_THREADS = env_int("WEB_SLOW_THREADS", 8)
STREAM_SYNC_THREADS = 4

REDIS_URL = env_str("REDIS_URL")
if not REDIS_URL:
    raise ImproperlyConfigured(
        "REDIS_URL is not set. Use ./run.sh or ./test.sh, which start an embedded Redis "
        "when it is missing, or point it at your server."
    )
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "gc"),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
            # A cache that is down degrades to the database instead of failing the request.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

# --- Auth -------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("name", "email")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

JWT_SECRET = env_str("JWT_SECRET") or SECRET_KEY
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_TTL_SECONDS", 15 * 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_TTL_SECONDS", 7 * 86400)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    # Access tokens carry a hash of the password hash: changing or resetting the
    # password revokes every access token issued before.
    "CHECK_REVOKE_TOKEN": True,
    "REVOKE_TOKEN_CLAIM": "pwd",
}

# Seconds Redis keeps the copy of a user row that authentication reads (see accounts.auth_cache).
AUTH_USER_CACHE_TTL = env_int("AUTH_USER_CACHE_TTL", 300)

PHONENUMBER_DEFAULT_REGION = env_str("DEFAULT_PHONE_REGION", "IN")
PHONENUMBER_DB_FORMAT = "E164"
PHONENUMBER_DEFAULT_FORMAT = "E164"

OTP_TTL_SECONDS = env_int("OTP_TTL_SECONDS", 300)
OTP_RETURN_IN_RESPONSE = env_bool("OTP_RETURN_IN_RESPONSE", DEBUG)
OTP_MAX_ATTEMPTS = env_int("OTP_MAX_ATTEMPTS", 5)
OTP_RESEND_COOLDOWN_SECONDS = env_int("OTP_RESEND_COOLDOWN_SECONDS", 60)
OTP_MAX_SENDS_PER_PHONE_PER_HOUR = env_int("OTP_MAX_SENDS_PER_PHONE_PER_HOUR", 5)
OTP_MAX_SENDS_PER_IP_PER_HOUR = env_int("OTP_MAX_SENDS_PER_IP_PER_HOUR", 20)
# Wrong codes in a row, across codes, that lock code checks for a number, purpose and scope
# (NIST SP 800-63B: at most 100), and how long after the last wrong one the lock lasts; after
# it, each wrong code locks again until a right one ends the streak (accounts.otp_scopes).
OTP_MAX_CONSECUTIVE_FAILURES = env_int("OTP_MAX_CONSECUTIVE_FAILURES", 30)
OTP_LOCKOUT_SECONDS = env_int("OTP_LOCKOUT_SECONDS", 3600)
# Wrong codes (verify-otp, reset-password) allowed per client IP each clock hour.
OTP_MAX_FAILURES_PER_IP_PER_HOUR = env_int("OTP_MAX_FAILURES_PER_IP_PER_HOUR", 30)
# Codes sent by the whole service in the last hour (the SMS bill); above: 503.
OTP_MAX_SENDS_PER_HOUR = env_int("OTP_MAX_SENDS_PER_HOUR", 1000)
# Wrong passwords allowed per phone and per client IP each clock hour (accounts.login_throttle).
LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = env_int("LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR", 10)
LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = env_int("LOGIN_MAX_FAILURES_PER_IP_PER_HOUR", 50)
# Password checks (login, change-password; right or wrong: each is a full hash) allowed per
# account and per client IP each clock minute (accounts.password_rate).
PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE = env_int("PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE", 5)
PASSWORD_CHECKS_PER_IP_PER_MINUTE = env_int("PASSWORD_CHECKS_PER_IP_PER_MINUTE", 30)
# Codes older than this are purged hourly. The send limits read the last hour of codes, so
# anything under an hour is raised to an hour (see accounts.maintenance).
OTP_RETENTION_SECONDS = env_int("OTP_RETENTION_SECONDS", 86400)
# Dotted path of the function that delivers a code: f(*, phone: str, code: str, purpose: str).
OTP_DELIVERY_BACKEND = env_str("OTP_DELIVERY_BACKEND", "accounts.otp_delivery.log_delivery")
# Proxies whose X-Forwarded-For is believed when finding the client IP.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

# --- Product limits -----------------------------------------------------------

BASIC_DAILY_LIMIT = env_int("BASIC_DAILY_LIMIT", 20)
USAGE_TIMEZONE = env_str("USAGE_TIMEZONE", "UTC")
CHATROOM_LIST_CACHE_TTL = env_int("CHATROOM_LIST_CACHE_TTL", 300)
# Bounds of one user's cached list pages, whatever the query strings (chatrooms.cache): a
# page past them is served from the database and not stored.
CHATROOM_LIST_CACHE_MAX_PAGES = env_int("CHATROOM_LIST_CACHE_MAX_PAGES", 32)
CHATROOM_LIST_CACHE_MAX_BYTES = env_int("CHATROOM_LIST_CACHE_MAX_BYTES", 1024 * 1024)
MESSAGE_MAX_CHARS = env_int("MESSAGE_MAX_CHARS", 8000)
SEARCH_TIMEOUT_MS = env_int("SEARCH_TIMEOUT_MS", 3000)
if SEARCH_TIMEOUT_MS < 1:  # 0 would switch PostgreSQL's timeout off, not make it instant
    raise ImproperlyConfigured("SEARCH_TIMEOUT_MS must be at least 1")
# Requests one user may make to the authenticated API per clock minute; past it, 429
# rate_limited. Counted in Redis, and not enforced while Redis is down (core.throttling).
API_RATE_PER_MINUTE = env_int("API_RATE_PER_MINUTE", 1200)
# Chatrooms one user may have; the next create is 409 chatroom_limit_reached.
MAX_CHATROOMS_PER_USER = env_int("MAX_CHATROOMS_PER_USER", 1000)
# The replay window of Idempotency-Key: a retry within it gets the first answer again; an
# older key is forgotten (pruned hourly) and its reuse is a new send.
IDEMPOTENCY_KEY_RETENTION_SECONDS = env_int("IDEMPOTENCY_KEY_RETENTION_SECONDS", 86400)
PAGE_SIZE_DEFAULT = env_int("PAGE_SIZE_DEFAULT", 20)
PAGE_SIZE_MAX = 100

# --- AI -----------------------------------------------------------------------

GEMINI_API_KEY = env_str("GEMINI_API_KEY")
GEMINI_MODEL = env_str("GEMINI_MODEL", "gemini-2.5-flash")
GEMINI_BASE_URL = env_str("GEMINI_BASE_URL")
GEMINI_TIMEOUT_SECONDS = env_int("GEMINI_TIMEOUT_SECONDS", 60)
AI_CONTEXT_TOKENS = env_int("AI_CONTEXT_TOKENS", 8000)
# The longest reply the model may write, in tokens (Gemini's max_output_tokens): one prompt
# has a bounded cost. A reply cut there completes with the text it has.
AI_MAX_OUTPUT_TOKENS = env_int("AI_MAX_OUTPUT_TOKENS", 2048)
OFFLINE_MODEL_CHUNK_DELAY_MS = env_int("OFFLINE_MODEL_CHUNK_DELAY_MS", 30)
AI_MAX_RETRIES = env_int("AI_MAX_RETRIES", 3)
AI_RETRY_BACKOFF_SECONDS = env_int("AI_RETRY_BACKOFF_SECONDS", 2)
AI_PENDING_SWEEP_AGE_SECONDS = env_int("AI_PENDING_SWEEP_AGE_SECONDS", 120)
AI_PENDING_SWEEP_INTERVAL_SECONDS = env_int("AI_PENDING_SWEEP_INTERVAL_SECONDS", 60)
# A worker owns a reply while its lease lasts; the worker process's keeper thread renews it
# every third of it, chunks or not. After a crash, the sweep hands the reply to another worker
# once the lease has run out.
REPLY_LEASE_SECONDS = env_int("REPLY_LEASE_SECONDS", 90)
# One attempt, claim to final write: at this deadline the keeper fails the reply
# (`ai_timeout`) with the text generated so far, whatever the model is doing.
REPLY_TIME_LIMIT_SECONDS = env_int("REPLY_TIME_LIMIT_SECONDS", 240)
# Threads of one worker process that may hold a database connection at the same time (the
# lease keeper has one more of its own, so that its renewals never wait behind them).
REPLY_DB_CONNECTIONS = env_int("REPLY_DB_CONNECTIONS", 20)
REPLY_STREAM_TTL_SECONDS = env_int("REPLY_STREAM_TTL_SECONDS", 3600)  # Redis events after done
REPLY_STREAM_KEEPALIVE_SECONDS = env_int("REPLY_STREAM_KEEPALIVE_SECONDS", 15)
# Open reply streams: per user across every web process, and per web process.
MAX_OPEN_STREAMS_PER_USER = env_int("MAX_OPEN_STREAMS_PER_USER", 10)
MAX_OPEN_STREAMS_PER_PROCESS = env_int("MAX_OPEN_STREAMS_PER_PROCESS", 500)
# Redis connections a web process uses for all its open streams together.
STREAM_REDIS_CONNECTIONS = env_int("STREAM_REDIS_CONNECTIONS", 4)
# A reply in flight that nothing happened to for this long past its lease, while no worker is
# alive, is failed and its prompt given back by the next send to its chatroom.
REPLY_ABANDONED_AFTER_SECONDS = env_int("REPLY_ABANDONED_AFTER_SECONDS", 120)
# A worker records a heartbeat this often while it consumes tasks; one silent for longer than
# WORKER_HEARTBEAT_MAX_AGE_SECONDS counts as gone (/readyz/worker, core.workers).
WORKER_HEARTBEAT_INTERVAL_SECONDS = env_int("WORKER_HEARTBEAT_INTERVAL_SECONDS", 10)
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env_int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", 30)
# The worker's CPU niceness (0 to 19; 0 leaves it as started): below the web server's, so a
# machine short of CPU answers requests first (gemini_clone/worker_priority.py).
WORKER_NICE = env_int("WORKER_NICE", 10)

# --- Billing --------------------------------------------------------------------

STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_PRO_PRICE_ID = env_str("STRIPE_PRO_PRICE_ID")
# Pinned, so Stripe's answers keep the shapes we read (items carry the period since basil).
STRIPE_API_VERSION = env_str("STRIPE_API_VERSION", "2025-06-30.basil")
STRIPE_API_BASE = env_str("STRIPE_API_BASE")  # another server speaking Stripe's API
# One attempt of one call; a request waits at most (retries + 1) times this per call (+ ~0.5 s).
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 5)
# Retries of a failed connection, a timeout or a 5xx/409, with Stripe's idempotency keys.
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 1)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
# How far our clock may run ahead of Stripe's: a state read from Stripe's API is stamped this
# far in the past, so events Stripe made around the read still apply (billing.mirror).
STRIPE_CLOCK_SKEW_SECONDS = env_int("STRIPE_CLOCK_SKEW_SECONDS", 5)
# Processed webhook events are kept this long (admin history), then pruned daily by beat.
STRIPE_EVENT_RETENTION_DAYS = env_int("STRIPE_EVENT_RETENTION_DAYS", 90)
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", f"http://localhost:{PORT}")
STRIPE_SUCCESS_URL = env_str(
    "STRIPE_SUCCESS_URL",
    f"{PUBLIC_BASE_URL}/payment-success/stripe?session_id={{CHECKOUT_SESSION_ID}}",
)
STRIPE_CANCEL_URL = env_str("STRIPE_CANCEL_URL", f"{PUBLIC_BASE_URL}/payment-cancel/stripe")
STRIPE_PORTAL_RETURN_URL = env_str(
    "STRIPE_PORTAL_RETURN_URL", f"{PUBLIC_BASE_URL}/billing-portal-return/stripe"
)

# --- Celery -------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's, building one Redis client per channel instead of one per message. Not for
    # rediss://: naming a transport would lose kombu's TLS set-up, which keys on the scheme.
    CELERY_BROKER_TRANSPORT = "gemini_clone.broker:RedisTransport"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 270)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A reply keeps streaming through a broker outage (Celery 6 would cancel it): its lease, not
# the broker message, says who owns it, and a redelivered message finds it taken.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A message not acknowledged within this time is handed to another worker.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600),
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "replies-sweep": {
        "task": "chatrooms.replies_sweep",
        "schedule": float(AI_PENDING_SWEEP_INTERVAL_SECONDS),
        "options": {"expires": float(AI_PENDING_SWEEP_INTERVAL_SECONDS)},
    },
    "otp-codes-purge": {
        "task": "accounts.otp_codes_purge",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "login-failures-purge": {
        "task": "accounts.login_failures_purge",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "refresh-tokens-flush": {
        "task": "accounts.refresh_tokens_flush",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "idempotency-records-prune": {
        "task": "chatrooms.idempotency_records_prune",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "stripe-events-prune": {
        "task": "billing.stripe_events_prune",
        "schedule": 86400.0,
        "options": {"expires": 3600.0},
    },
}

# --- REST framework -------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.CachedUserJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.UserRequestThrottle"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.FirstRenderer",
    "DEFAULT_SCHEMA_CLASS": "core.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "core.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gemini Clone API",
    "DESCRIPTION": "Phone-OTP accounts, chatrooms with Gemini replies, and Pro subscriptions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api",
    "ENUM_NAME_OVERRIDES": {},
    # The SSE stream is a plain async view, outside DRF: this hook documents it.
    "PREPROCESSING_HOOKS": ["chatrooms.api.reply_views.schema_add_reply_stream"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",  # the default, kept
        "core.schema.schema_add_request_id_header",
    ],
}

# --- HTTP, security, static -------------------------------------------------------

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
API_MAX_BODY_BYTES = 1024 * 1024
APPEND_SLASH = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Probes and the scraper call from inside the network, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^readyz/worker$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "console")  # or "json" (core/logging_config.py)
LOGGING = logging_settings(log_format=LOG_FORMAT, level=LOG_LEVEL)

# /metrics (core/metrics.py) answers only with this bearer token; unset, it is a 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# Error reports (gemini_clone.error_reporting): off unless a DSN is set; personal data scrubbed.
SENTRY_DSN = env_str("SENTRY_DSN")
if SENTRY_DSN:
    error_reporting_start(
        dsn=SENTRY_DSN,
        environment=env_str("SENTRY_ENVIRONMENT"),
        traces_sample_rate=float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0")),
    )
