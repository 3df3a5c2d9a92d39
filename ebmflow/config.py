"""Components remember the arguments they were built with.

Subclasses of :class:`Configurable` (every Energy, Sampler, Objective, Dataset and
NoiseSchedule) record the keyword arguments of their outermost ``__init__`` call;
``get_config()`` returns them, and ``ebmflow.save`` writes them to ``config.json`` so that
``ebmflow.load`` can rebuild the component with ``ebmflow.create``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_CONFIG_ATTR = "_ebmflow_config"


class Configurable:
    """Mixin recording constructor arguments (defaults applied) as ``get_config()``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_records_config", False):
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Any, *args: Any, **kw: Any) -> None:
            if _CONFIG_ATTR not in self.__dict__:  # only the outermost __init__ records
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config: dict[str, Any] = {}
                for name, value in list(bound.arguments.items())[1:]:
                    kind = signature.parameters[name].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        config.update(value)
                    elif kind is not inspect.Parameter.VAR_POSITIONAL:
                        config[name] = value
                object.__setattr__(self, _CONFIG_ATTR, config)
            init(self, *args, **kw)

        recording_init._records_config = True  # type: ignore[attr-defined]
        # replacing the class's __init__ is the point: the wrapper records its arguments
        cls.__init__ = recording_init  # type: ignore[method-assign]

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments this object was built with."""
        return dict(self.__dict__.get(_CONFIG_ATTR, {}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
