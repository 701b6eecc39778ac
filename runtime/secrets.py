"""Reading the secrets that rules name with `secret("NAME")`.

A secret comes from the environment variable of the same name, else from the
file of that name in the secrets folder (the `secrets_dir` of the rules, or the
daemon's `--secrets-dir`), with one trailing newline removed. Values are never
logged; only names appear in messages.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("irules.secrets")

_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class Secrets:
    """Looks up secrets by name; `get` returns `None` for a secret that is not set anywhere."""

    def __init__(self, folder: Path | None, environ: Mapping[str, str] | None = None, cache_s: float = 0.0) -> None:
        self.folder = folder
        self._environ = os.environ if environ is None else environ
        # A daemon reads the same secret for every request; with `cache_s`, a value is read
        # again only that many seconds later, so a rotated secret file is seen soon after.
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, str | None]] = {}

    def get(self, name: str) -> str | None:
        if not _NAME.fullmatch(name):
            return None
        if self._cache_s:
            now = time.monotonic()
            cached = self._cache.get(name)
            if cached is not None and cached[0] > now:
                return cached[1]
            value = self._read(name)
            self._cache[name] = (now + self._cache_s, value)
            return value
        return self._read(name)

    def _read(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value:
            return value
        if self.folder is None:
            return None
        path = self.folder / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            log.error("cannot read secret %s from %s: %s", name, path, error)
            return None
        return text.removesuffix("\n").removesuffix("\r") or None

    __call__ = get
