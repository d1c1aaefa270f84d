"""Stagegate settings: one file, every value from the environment (see `.env.example`).

With nothing set, this is a local development instance: SQLite and the blob store under
`STAGEGATE_DATA_DIR` (default `var/`), a generated SECRET_KEY kept there, and a Celery broker that
needs no server (kombu's filesystem transport). `STAGEGATE_ENV=production` refuses to start without
an explicit SECRET_KEY and ALLOWED_HOSTS.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url

from config.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_bytes,
    env_int,
    env_list,
    env_path,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

STAGEGATE_ENV = env_str("STAGEGATE_ENV", "development")
if STAGEGATE_ENV not in {"development", "production"}:
    raise ImproperlyConfiguredEnv(
        f"STAGEGATE_ENV={STAGEGATE_ENV!r}: use development or production")
PRODUCTION = STAGEGATE_ENV == "production"

DATA_DIR = env_path("STAGEGATE_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _development_secret_key() -> str:
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION:
    if not SECRET_KEY:
        raise ImproperlyConfiguredEnv("STAGEGATE_ENV=production needs SECRET_KEY")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfiguredEnv("STAGEGATE_ENV=production needs ALLOWED_HOSTS")
elif not SECRET_KEY:
    SECRET_KEY = _development_secret_key()

# The debug page (tracebacks, settings) only under `manage.py runserver`, only when DEBUG=true is
# set explicitly, never in production; gunicorn and every other server get the styled error
# pages whatever DEBUG says. Even then, SecretsFilter hides every setting that can hold a secret.
UNDER_RUNSERVER = len(sys.argv) > 1 and Path(sys.argv[0]).name == "manage.py" \
    and sys.argv[1] == "runserver"
DEBUG = env_bool("DEBUG", False) and UNDER_RUNSERVER and not PRODUCTION
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.errors.SecretsFilter"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("STAGEGATE_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "config.devserver",  # before staticfiles: its runserver is the one `make run` starts
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "axes",
    "django_prometheus",
    "audit",
    "accounts",
    "models.apps.RegistryConfig",
    "evaluations",
    "releases",
    "publishing",
]

MIDDLEWARE = [
    "config.logs.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.RejectUntrustedInput",
    "config.refusals.RecordRefusals",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a sign-in lockout into the locked-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "accounts.context_processors.navigation",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            # The demo's worker writes while the web process reads: WAL and a generous busy
            # timeout keep SQLite from answering "database is locked".
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
AUTHENTICATION_BACKENDS = [
    "accounts.backends.LockoutBackend",  # django-axes: refuses locked-out sign-ins
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"

# Brute-force protection (django-axes; accounts/throttle.py): failures are counted per username
# and per address for passwords, per address for API tokens; either count reaching the limit
# locks out for STAGEGATE_LOCKOUT_MINUTES (0: until an administrator unlocks it).
AXES_FAILURE_LIMIT = env_int("STAGEGATE_LOGIN_FAILURE_LIMIT", 5)
STAGEGATE_LOCKOUT_MINUTES = env_int("STAGEGATE_LOCKOUT_MINUTES", 15)
AXES_COOLOFF_TIME = (timedelta(minutes=STAGEGATE_LOCKOUT_MINUTES)
                     if STAGEGATE_LOCKOUT_MINUTES else None)
AXES_LOCKOUT_PARAMETERS = "accounts.throttle.lockout_parameters"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# The client's address is REMOTE_ADDR unless Stagegate sits behind this many trusted proxies
# (nginx: 1), whose X-Forwarded-For is then read; trusting it by default would let anyone
# pick the address their failures count against.
STAGEGATE_TRUSTED_PROXIES = env_int("STAGEGATE_TRUSTED_PROXIES", 0)
if STAGEGATE_TRUSTED_PROXIES:
    AXES_IPWARE_PROXY_COUNT = STAGEGATE_TRUSTED_PROXIES
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# Refusal events (audit/refusals.py): repeats of one kind within the window are folded into the
# next event; past the burst, one actor's or address's further refusals are folded too.
STAGEGATE_REFUSAL_WINDOW_SECONDS = env_int("STAGEGATE_REFUSAL_WINDOW_SECONDS", 60)
STAGEGATE_REFUSAL_BURST = env_int("STAGEGATE_REFUSAL_BURST", 20)

# Shared counters (refusal aggregation): Redis when STAGEGATE_CACHE_URL or REDIS_URL is set,
# so every web process folds into the same counts; otherwise in the process's memory.
STAGEGATE_CACHE_URL = env_str("STAGEGATE_CACHE_URL") or env_str("REDIS_URL")
CACHES = {"default": (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": STAGEGATE_CACHE_URL,
     "KEY_PREFIX": "stagegate"} if STAGEGATE_CACHE_URL else
    {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "stagegate"})}
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Files: the content-addressed blob store -------------------------------------------------
# Blobs go through Django's Storage API, so a worker on another machine reads them the same way
# the web process wrote them. `filesystem` keeps them under STAGEGATE_DATA_DIR/blobstore; `s3`
# uses django-storages with the AWS_* variables below (any S3-compatible service).
BLOB_STORAGE = env_str("STAGEGATE_BLOB_STORAGE", "filesystem")
if BLOB_STORAGE == "filesystem":
    _blob_backend = {
        "BACKEND": "models.blobstore.FileSystemBlobStorage",
        "OPTIONS": {"location": str(env_path("STAGEGATE_BLOB_DIR", DATA_DIR / "blobstore"))},
    }
elif BLOB_STORAGE == "s3":
    _blob_backend = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL"),
            "region_name": env_str("AWS_S3_REGION_NAME"),
            "access_key": env_str("AWS_ACCESS_KEY_ID"),
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY"),
            "file_overwrite": True,  # content-addressed: same name, same bytes
            "default_acl": None,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 3600),
            # An opened object is buffered in a temporary file that moves to disk past this
            # size: a multi-GB blob never sits in a process's memory.
            "max_memory_size": 16 * 1024 * 1024,
        },
    }
    if not _blob_backend["OPTIONS"]["bucket_name"]:
        raise ImproperlyConfiguredEnv("STAGEGATE_BLOB_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
else:
    raise ImproperlyConfiguredEnv(f"STAGEGATE_BLOB_STORAGE={BLOB_STORAGE!r}: use filesystem or s3")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(DATA_DIR / "media")}},
    "blobs": _blob_backend,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploads are hashed while they arrive and written once, to this folder, which sits on the same
# filesystem as the default blob store so that storing a blob is a rename.
FILE_UPLOAD_TEMP_DIR = str(env_path("STAGEGATE_UPLOAD_TMP_DIR", DATA_DIR / "tmp"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_PERMISSIONS = 0o444
STAGEGATE_MAX_FILE_SIZE = env_bytes("STAGEGATE_MAX_FILE_SIZE", 200 * 1024**3)
# Largest checkpoint (all its files): a multipart upload that declares more is refused before
# a byte is staged.
STAGEGATE_MAX_CHECKPOINT_SIZE = env_bytes("STAGEGATE_MAX_CHECKPOINT_SIZE", 2 * 1024**4)
STAGEGATE_MAX_FILES = env_int("STAGEGATE_MAX_FILES", 10_000)
DATA_UPLOAD_MAX_NUMBER_FILES = STAGEGATE_MAX_FILES
STAGEGATE_UPLOAD_SESSION_HOURS = env_int("STAGEGATE_UPLOAD_SESSION_HOURS", 24)
# The niceness (0-19) of the thread that hashes and writes an upload's bytes: on a busy server
# a large upload yields the CPU (and, where the I/O scheduler follows niceness, the disk) to
# small requests. 0: no change.
STAGEGATE_BULK_NICE = min(19, max(0, env_int("STAGEGATE_BULK_NICE", 10)))
# Hub client uploads: LFS objects above this size go up in parts of this size (multipart);
# below it, in one streaming PUT (one pass: no reassembly).
STAGEGATE_LFS_PART_SIZE = env_bytes("STAGEGATE_LFS_PART_SIZE", 5 * 1024**3)
# The Xet CAS the write token points the client at: empty for this site's own /xet, or the
# origin of a host (or load-balancer pool) that routes /xet/* to Stagegate, e.g.
# https://cas.stagegate.lab/xet.
STAGEGATE_XET_CAS_URL = env_str("STAGEGATE_XET_CAS_URL", "").rstrip("/")
# Lifetime of a Xet access token; the client asks for a new one before it expires.
STAGEGATE_XET_TOKEN_SECONDS = env_int("STAGEGATE_XET_TOKEN_SECONDS", 3600)

# --- Static -----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = DEBUG or not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- Celery -----------------------------------------------------------------------------------
_broker_dir = DATA_DIR / "broker"
# The embedded broker names a host only so kombu does not warn that it "reverts to localhost".
CELERY_BROKER_URL = (env_str("CELERY_BROKER_URL") or env_str("REDIS_URL")
                     or "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcasts (worker control) would otherwise go to ./control in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Above the longest eval, so a slow eval is not handed to a second worker while it runs.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600),
        # How often a worker looks for messages of workers that died (kombu's default is 10 s).
        "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 10),
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS = False

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.authentication.TokenScopePermission",
    ],
    # JSON and urlencoded bodies through the validation layer; multipart only where a view
    # takes files (checkpoint uploads, eval packs) and says so.
    "DEFAULT_PARSER_CLASSES": [
        "config.api.StrictJSONParser",
        "config.api.StrictFormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stagegate API",
    "DESCRIPTION": "Submit, evaluate, review and publish model checkpoints. "
                   "Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ReleaseStatusEnum": "releases.models.Release.Status",
        "AccessRequestStatusEnum": "releases.models.AccessRequest.Status",
        "CheckpointStatusEnum": "models.models.Checkpoint.Status",
        "UploadSessionStatusEnum": "models.models.UploadSession.Status",
        "EvalRunStatusEnum": "evaluations.models.EvalRun.Status",
    },
}

# --- Untrusted input (config/untrusted.py) ----------------------------------------------------
# Largest JSON request body, and deepest nesting of any untrusted JSON (request bodies,
# safetensors headers, config.json, index files).
STAGEGATE_MAX_JSON_BODY = env_bytes("STAGEGATE_MAX_JSON_BODY", 1024 * 1024)
STAGEGATE_MAX_JSON_DEPTH = env_int("STAGEGATE_MAX_JSON_DEPTH", 64)

# --- Mail -------------------------------------------------------------------------------------
# Development default: one line per message on the console, the whole message in EMAIL_FILE_PATH.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "config.mail.SummaryBackend")
EMAIL_FILE_PATH = str(env_path("EMAIL_FILE_PATH", DATA_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "stagegate@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Transport and browser security (README: Security; docs/deploy.md) ---------------------------
# Production runs behind TLS (nginx terminates it and sets X-Forwarded-Proto): cookies are
# secure, plain HTTP is redirected to HTTPS, and HSTS tells browsers never to use HTTP again.
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers and Prometheus probe over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): nothing is loaded from another origin, no inline or
# eval'd script, no plugin, no framing; inline style attributes only (bar widths). Model-card
# images are rewritten to the model's own files (releases/catalogue.py render_card).
_CSP_DIRECTIVES = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "style-src-attr": ["'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# The development debug page is all inline: there the policy only reports.
if DEBUG:
    CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": _CSP_DIRECTIVES}
else:
    CONTENT_SECURITY_POLICY = {"DIRECTIVES": _CSP_DIRECTIVES}

# text (one readable line) or json (one object per line, with the request id that follows a
# request into the tasks it queues: config/logs.py).
STAGEGATE_LOG_FORMAT = env_str("STAGEGATE_LOG_FORMAT", "text")
if STAGEGATE_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfiguredEnv(f"STAGEGATE_LOG_FORMAT={STAGEGATE_LOG_FORMAT!r}: use text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.logs.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["request_id"],
                             "formatter": STAGEGATE_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"},
                # Every failure and lockout is an audit event; axes' own lines are noise.
                "axes": {"level": "WARNING"}},
}

# Workers log through LOGGING above (so STAGEGATE_LOG_FORMAT applies to them too).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS = False

# --- Operations -------------------------------------------------------------------------------
# /metrics is open to these networks (comma-separated CIDRs) and to a bearer token.
STAGEGATE_METRICS_ALLOW = [ipaddress.ip_network(n.strip()) for n in env_str(
    "STAGEGATE_METRICS_ALLOW", "127.0.0.1/32,::1/128").split(",") if n.strip()]
STAGEGATE_METRICS_TOKEN = env_str("STAGEGATE_METRICS_TOKEN", "")

# --- Signing ------------------------------------------------------------------------------------
# The lab's EC P-256 private key (PEM) that signs every published stage (model.sig and
# release.intoto.json) and the audit chain heads: a file, or the PEM itself in the environment
# (newlines may be written as \n). Without either, a development instance makes one in the data
# dir; production refuses to publish until one is set (docs/signing.md).
STAGEGATE_SIGNING_KEY_FILE = env_str("STAGEGATE_SIGNING_KEY_FILE", "")
STAGEGATE_SIGNING_KEY = env_str("STAGEGATE_SIGNING_KEY", "")
STAGEGATE_SIGNING_REQUIRE_KEY = PRODUCTION
# Public keys of rotated-out signing keys (PEM files, comma-separated): still published at
# /.well-known/stagegate/signing-keys.pem, so what they signed still verifies.
STAGEGATE_SIGNING_RETIRED_KEYS = env_list("STAGEGATE_SIGNING_RETIRED_KEYS", [])

# --- Anchored audit heads ----------------------------------------------------------------------
# A signed chain head (sequence, hash, time, key id, and the event hashes since the previous
# head) is exported every this many events, and every this many minutes when events were
# written since (0 turns either trigger off).
STAGEGATE_AUDIT_HEAD_EVERY_EVENTS = env_int("STAGEGATE_AUDIT_HEAD_EVERY_EVENTS", 100)
STAGEGATE_AUDIT_HEAD_EVERY_MINUTES = env_int("STAGEGATE_AUDIT_HEAD_EVERY_MINUTES", 60)
# Where heads go, comma-separated: file:///path/heads.jsonl (one JSON line appended per head),
# s3://bucket/prefix (one object per head and `latest.json`, via the AWS_* settings), and
# https://host/path (a POST of the head as JSON).
STAGEGATE_AUDIT_HEAD_SINKS = env_list("STAGEGATE_AUDIT_HEAD_SINKS", [])
# The S3 sink's service: the same AWS_* variables as the S3 blob store.
STAGEGATE_AUDIT_HEAD_S3 = {"endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
                           "region_name": env_str("AWS_S3_REGION_NAME") or None,
                           "aws_access_key_id": env_str("AWS_ACCESS_KEY_ID") or None,
                           "aws_secret_access_key": env_str("AWS_SECRET_ACCESS_KEY") or None}

# --- Publishing to Hugging Face Hubs -----------------------------------------------------------
# The Hubs publication targets may name (base URLs, comma-separated): approved bytes and a
# target's token go nowhere else.
STAGEGATE_PUBLICATION_ENDPOINTS = env_list("STAGEGATE_PUBLICATION_ENDPOINTS",
                                           ["https://huggingface.co"])
# Seconds between two runs of the reconciler, which compares every target with what Stagegate
# says it should be (0: never; run `celery -A config beat` for it to run at all).
STAGEGATE_PUBLICATION_RECONCILE_SECONDS = env_int("STAGEGATE_PUBLICATION_RECONCILE_SECONDS", 900)
# A mirror run that meets a transient error (network, 408/412/429/5xx, a busy target) is tried
# again this many times, the first after this many seconds, then doubling.
STAGEGATE_PUBLICATION_MAX_RETRIES = env_int("STAGEGATE_PUBLICATION_MAX_RETRIES", 5)
STAGEGATE_PUBLICATION_RETRY_SECONDS = env_int("STAGEGATE_PUBLICATION_RETRY_SECONDS", 60)
# How long one run may hold a target before another may take it (a dead worker's claim lapses).
STAGEGATE_PUBLICATION_CLAIM_SECONDS = env_int("STAGEGATE_PUBLICATION_CLAIM_SECONDS", 6 * 3600)
# Seconds the Hub has to answer one API call (uploads are not limited by this).
STAGEGATE_PUBLICATION_HTTP_TIMEOUT = env_int("STAGEGATE_PUBLICATION_HTTP_TIMEOUT", 60)

CELERY_BEAT_SCHEDULE = {
    "purge-expired-upload-sessions": {
        "task": "registry.purge_expired_upload_sessions",
        "schedule": 3600.0,
    },
}
# The reconciler: every this many seconds (0: never), work left behind by a lost worker or
# message (eval runs whose heartbeat went stale, conversions, webhook deliveries, mirror jobs)
# is re-queued once or marked failed with the reason.
STAGEGATE_RECONCILE_SECONDS = env_int("STAGEGATE_RECONCILE_SECONDS", 300)
# How long queued or pending work may wait before the reconciler counts it as left behind;
# above the longest retry back-off (an hour), so it never races a retry that is only waiting.
STAGEGATE_RECONCILE_AFTER_SECONDS = env_int("STAGEGATE_RECONCILE_AFTER_SECONDS", 2 * 3600)
if STAGEGATE_RECONCILE_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["reconcile-left-behind-work"] = {
        "task": "stagegate.reconcile_left_behind",
        "schedule": float(STAGEGATE_RECONCILE_SECONDS),
    }
# Audit events are sealed into the hash chain right after each commit; this periodic pass
# (seconds, 0: never) seals one that was committed just as another sealer finished.
STAGEGATE_AUDIT_SEAL_SECONDS = env_int("STAGEGATE_AUDIT_SEAL_SECONDS", 10)
if STAGEGATE_AUDIT_SEAL_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["seal-audit-events"] = {
        "task": "audit.seal",
        "schedule": float(STAGEGATE_AUDIT_SEAL_SECONDS),
    }
if STAGEGATE_AUDIT_HEAD_EVERY_MINUTES > 0:
    CELERY_BEAT_SCHEDULE["export-audit-head"] = {
        "task": "audit.export_head",
        "schedule": 60.0 * STAGEGATE_AUDIT_HEAD_EVERY_MINUTES,
    }
if STAGEGATE_PUBLICATION_RECONCILE_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["reconcile-publication-targets"] = {
        "task": "publishing.reconcile_targets",
        "schedule": float(STAGEGATE_PUBLICATION_RECONCILE_SECONDS),
    }

# --- Evaluations ------------------------------------------------------------------------------
# A running eval writes a heartbeat with its progress; a run whose heartbeat is older than this
# was lost with its worker and may be claimed again when its task is re-delivered.
STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS = env_int("STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS", 120)
# Hard time limit of one eval run (the soft limit, 60 s earlier, records a clear error).
STAGEGATE_EVAL_TIME_LIMIT_SECONDS = env_int("STAGEGATE_EVAL_TIME_LIMIT_SECONDS", 4 * 3600)
# Address-space limit of a worker process while it runs one eval (0: none). Weights are loaded
# only on workers, never in the web process, and only within this limit.
STAGEGATE_EVAL_MEMORY_LIMIT = env_bytes("STAGEGATE_EVAL_MEMORY_LIMIT", 16 * 1024**3)
# CPU threads torch may use in one eval (0: torch's default, all cores). With several worker
# processes on one machine, cores / processes keeps them from fighting over the CPU.
STAGEGATE_EVAL_TORCH_THREADS = env_int("STAGEGATE_EVAL_TORCH_THREADS", 0)
# How many times one run may be attempted (a lost worker, a transient database or storage
# error) before it is errored for good; a person then asks for it again.
STAGEGATE_EVAL_MAX_ATTEMPTS = env_int("STAGEGATE_EVAL_MAX_ATTEMPTS", 3)
# Whether workers consume the `gpu` queue. When they do, evals that prefer a GPU (finetune_attack)
# go there for models of at least STAGEGATE_GPU_MIN_PARAMETERS parameters; smaller models, and
# every model when this is off, run on the `evals` queue on the CPU.
STAGEGATE_GPU_WORKERS = env_bool("STAGEGATE_GPU_WORKERS", False)
STAGEGATE_GPU_MIN_PARAMETERS = env_int("STAGEGATE_GPU_MIN_PARAMETERS", 100_000_000)
# Each worker machine keeps verified copies of the checkpoints it evaluates here, one folder per
# manifest digest, least recently used evicted past the cap (0: no copies; every model eval
# then re-hashes the blob store's bytes itself). A local disk, never shared between machines.
STAGEGATE_EVAL_CACHE_DIR = env_path("STAGEGATE_EVAL_CACHE_DIR", DATA_DIR / "eval-cache")
STAGEGATE_EVAL_CACHE_BYTES = env_bytes("STAGEGATE_EVAL_CACHE_BYTES", 50 * 1024**3)
# Models a worker process keeps loaded between the evals it runs on them (0: load every time).
STAGEGATE_EVAL_MODEL_CACHE_MODELS = env_int("STAGEGATE_EVAL_MODEL_CACHE_MODELS", 1)

# Groups whose members may read the whole audit log (superusers and staff always may).
STAGEGATE_AUDIT_READER_GROUPS = env_list("STAGEGATE_AUDIT_READER_GROUPS",
                                         ["safety", "policy", "release_managers"])

# --- Downloads ----------------------------------------------------------------------------------
# stream (Django/gunicorn send the bytes), x-accel (nginx sends them: see README), or redirect
# (a 302 to the blob storage's presigned URL, e.g. S3).
# Default: stream from the filesystem store, redirect to S3 (streaming an S3 object would pull
# all of it through the web worker for every request, Range requests included).
STAGEGATE_DOWNLOAD_MODE = env_str("STAGEGATE_DOWNLOAD_MODE",
                                  "redirect" if BLOB_STORAGE == "s3" else "stream")
if STAGEGATE_DOWNLOAD_MODE not in {"stream", "x-accel", "redirect"}:
    raise ImproperlyConfiguredEnv(
        f"STAGEGATE_DOWNLOAD_MODE={STAGEGATE_DOWNLOAD_MODE!r}: use stream, x-accel or redirect")
if STAGEGATE_DOWNLOAD_MODE == "redirect" and BLOB_STORAGE != "s3":
    raise ImproperlyConfiguredEnv("STAGEGATE_DOWNLOAD_MODE=redirect needs STAGEGATE_BLOB_STORAGE=s3 "
                                  "(a filesystem blob has no URL to redirect to): use stream or "
                                  "x-accel")
if STAGEGATE_DOWNLOAD_MODE == "x-accel" and BLOB_STORAGE != "filesystem":
    raise ImproperlyConfiguredEnv("STAGEGATE_DOWNLOAD_MODE=x-accel needs the filesystem blob store "
                                  "(nginx serves the files from its folder): with s3, use redirect")
# The nginx `internal` location that maps onto the blob store's root (x-accel mode).
STAGEGATE_X_ACCEL_PREFIX = env_str("STAGEGATE_X_ACCEL_PREFIX", "/_blobstore")

# --- Safetensors conversion of scanned-safe PyTorch checkpoints ------------------------------
STAGEGATE_CONVERT_TIMEOUT_SECONDS = env_int("STAGEGATE_CONVERT_TIMEOUT_SECONDS", 3600)
# Address-space limit of the converting process (at least 3x the weights plus 2 GB is used).
STAGEGATE_CONVERT_MEMORY_LIMIT = env_bytes("STAGEGATE_CONVERT_MEMORY_LIMIT", 8 * 1024**3)
