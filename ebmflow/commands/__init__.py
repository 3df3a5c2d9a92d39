"""The core's CLI sub-commands, one module per command group.

Each module exposes ``add_*(subparsers)`` functions that add a sub-parser whose ``func(args)``
runs the command (``args.host`` is the plugin host). Modules import nothing heavy at import
time, so ``ebmflow --help`` stays fast; torch is imported inside the command functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ebmflow.commands.convert import add_convert
from ebmflow.commands.demo import add_demo
from ebmflow.commands.evaluate import add_evaluate
from ebmflow.commands.listing import add_components, add_plugins
from ebmflow.commands.sample import add_sample
from ebmflow.commands.sweep import add_sweep
from ebmflow.commands.train import add_train

#: A function that adds one sub-command to the ``subparsers`` action.
CommandAdder = Callable[[Any], None]

#: The core's sub-commands, in the order ``--help`` lists them.
CORE_COMMANDS: list[CommandAdder] = [
    add_demo,
    add_plugins,
    add_components,
    add_sample,
    add_evaluate,
    add_train,
    add_sweep,
    add_convert,
]
