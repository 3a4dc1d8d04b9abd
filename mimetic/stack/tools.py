"""Command-line tools the test suite drives (not services): installed from Debian when missing."""

from __future__ import annotations

import os
import shutil

from mimetic.stack.postgres import _apt
from mimetic.stack.procs import StackError

#: program -> Debian package; `tmux` runs `mimetic watch` under a pseudo-terminal in the tests
TEST_TOOLS: dict[str, str] = {"tmux": "tmux"}


def ensure_test_tools() -> list[str]:
    """Install the Debian packages of missing test tools (needs root); a line per tool."""
    missing = {prog: pkg for prog, pkg in TEST_TOOLS.items() if shutil.which(prog) is None}
    lines = [f"{prog}: installed" for prog in TEST_TOOLS if prog not in missing]
    if not missing:
        return lines
    packages = sorted(set(missing.values()))
    if os.geteuid() != 0:
        raise StackError(f"the tests need {', '.join(sorted(missing))}: "
                         f"run `sudo apt-get install {' '.join(packages)}`, then test again")
    print(f"test tools: installing {' '.join(packages)} from Debian ...", flush=True)
    _apt(["update", "-qq"], "apt-get update")
    _apt(["install", "-y", "-qq", *packages], f"apt-get install {' '.join(packages)}")
    return lines + [f"{prog}: installed now" for prog in sorted(missing)]
