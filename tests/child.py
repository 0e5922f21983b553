"""How tests start mambart in a child process.

The child must import the mambart the tests import: the installed package
in CI, the source tree (with its built _core) in a developer build. So the
child runs away from the checkout (a source tree without _core must not
shadow the installed package) with PYTHONPATH set to where this process
found mambart.
"""
import os
import tempfile
from pathlib import Path

import mambart

CWD = tempfile.gettempdir()


def env(**extra: str) -> dict:
    root = str(Path(mambart.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""), **extra}
