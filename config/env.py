"""Small typed readers for environment variables that fail loudly on bad values.

Every setting Stagegate has comes through one of these, so `.env.example` can list them all and a
typo such as `DEBUG=ture` stops the process with a message instead of silently meaning False.
"""

from __future__ import annotations

import os
from pathlib import Path


class ImproperlyConfiguredEnv(RuntimeError):
    pass


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a boolean; use true or false")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value.strip().replace("_", ""))
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not an integer") from None


_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2,
               "G": 1024**3, "GB": 1024**3, "T": 1024**4, "TB": 1024**4}


def env_bytes(name: str, default: int) -> int:
    """A size such as `500MB`, `2G` or `1048576` (units are powers of 1024)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    text = value.strip().upper().replace(" ", "")
    digits = text.rstrip("KMGTB")
    unit = text[len(digits):]
    if not digits.isdigit() or unit not in _SIZE_UNITS:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a size; use e.g. 500MB or 2GB")
    return int(digits) * _SIZE_UNITS[unit]


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default
