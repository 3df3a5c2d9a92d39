"""Make ``ebmflow_example`` importable when the package is not installed (tests run from a
source checkout); an installed copy takes precedence."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

if importlib.util.find_spec("ebmflow_example") is None:
    sys.path.insert(0, str(SRC))
