"""The README documents every variable the settings read, and the client's own."""

from __future__ import annotations

import re

from tests.liveserver import REPO

# The settings read the environment through env_str/env_bool/... and os.environ.
READ = re.compile(r'(?:env_\w+\(|os\.environ(?:\.get)?[\[(])\s*"([A-Z][A-Z0-9_]+)"')


def test_every_variable_the_settings_read_is_in_the_readme():
    settings = (REPO / "sollol_site" / "settings.py").read_text()
    client = (REPO / "sollol" / "client.py").read_text()
    read = set(READ.findall(settings)) | set(READ.findall(client))
    assert len(read) > 100  # the pattern still finds what the settings read
    readme = (REPO / "README.md").read_text()
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert missing == [], f"not documented in README.md: {missing}"
