"""The first Alertmanager release that accepts each configuration feature irules may emit.

Alertmanager loads its YAML strictly, so a key unknown to the running
release is a load error. Sources: the configuration docs and `config/`
structs of each release tag, 0.25 to 0.28.
"""

from __future__ import annotations

Version = tuple[int, int]

# `msteams_configs` with an inline `webhook_url`.
TEAMS_SINCE: Version = (0, 26)
# `msteams_configs` with `webhook_url_file`.
TEAMS_URL_FILE_SINCE: Version = (0, 27)
# `webhook_configs` with `url_file`.
WEBHOOK_URL_FILE_SINCE: Version = (0, 26)
# Quoted UTF-8 label names such as `"service.name"` in matchers.
UTF8_LABELS_SINCE: Version = (0, 27)
