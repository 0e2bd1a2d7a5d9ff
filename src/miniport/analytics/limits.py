"""Limits of the report queries that their parameter models also check, in a module of their
own: :mod:`miniport.domain.saved_reports` reads them at every start (the CLI's too) without
loading the SQL compilers of :mod:`.retention` and :mod:`.paths`."""

from __future__ import annotations

from typing import Final

MAX_PERIODS: Final = 30
"""Retention: periods after the cohort's own (day or week), 1 to this."""
MAX_DEPTH: Final = 5
"""Paths: steps after the start, 1 to this."""
