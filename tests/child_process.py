"""Running a short Python script in a child process, as the tests that load our files with other
code do (transformers alone, the official pipeline): the script gets ``args`` (JSON, from argv) and
``args["paths"]`` first on ``sys.path``. ``isolated``: ``python -I -S`` (no user site, no .pth
files, so blalm's editable install is not importable; the script's ``blalm_importable`` says so),
with an empty, offline Hugging Face home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PREAMBLE = '''import json, sys
args = json.loads(sys.argv[1])
sys.path[:0] = args["paths"]
try:
    import blalm  # noqa: F401
    blalm_importable = True
except ImportError:
    blalm_importable = False
'''


def run_child(body: str, args: dict[str, Any], folder: Path, *, isolated: bool = False,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Write ``PREAMBLE + body`` to ``folder/child.py`` and run it there with ``args``."""
    script = Path(folder) / "child.py"
    script.write_text(PREAMBLE + body)
    flags = ["-I", "-S"] if isolated else []
    env = {**os.environ, "HF_HOME": str(Path(folder) / "hf_home"), "HF_HUB_OFFLINE": "1"} if isolated else None
    return subprocess.run([sys.executable, *flags, str(script), json.dumps(args)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)
