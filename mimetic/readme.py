"""Keep generated README sections (the configuration table) in step with the code."""

from __future__ import annotations

import re

from mimetic.config import REPO_ROOT, settings_markdown

README = REPO_ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- config:begin -->\n).*?(<!-- config:end -->)", re.S)


def render_readme(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + settings_markdown() + "\n" + m.group(2), text)


def update_readme() -> bool:
    """Rewrite the README's configuration table; True when it changed."""
    old = README.read_text()
    new = render_readme(old)
    if new != old:
        README.write_text(new)
    return new != old
