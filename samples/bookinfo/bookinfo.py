"""Run one Bookinfo service: `python samples/bookinfo/bookinfo.py SERVICE [--port 9080]`.

Run as a script, this file puts the repository root on sys.path so that the service modules
import as the `samples.bookinfo` package; nothing outside the standard library and aiohttp
is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from samples.bookinfo.cli import main

if __name__ == "__main__":
    main()
