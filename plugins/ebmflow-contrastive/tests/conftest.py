"""Make ``ebmflow_contrastive`` importable when the distribution is not installed (tests run
from a source checkout); an installed copy takes precedence."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("ebmflow_contrastive") is None:
    sys.path.insert(0, str(ROOT))
