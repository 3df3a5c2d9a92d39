"""Discovery of installed plugins: the entry points in the group ``ebmflow``, filtered by the
environment, and the rule for a plugin name that two distributions claim.

``EBMFLOW_PLUGINS=a,b`` loads only these entry-point plugins (by entry-point or distribution
name, compared after PEP 503 normalisation; set but empty loads none) and
``EBMFLOW_BLOCK_PLUGINS=x,y`` never loads these; the others are recorded ``disabled``.

Plugin names are claimed, not taken: when two distributions register an entry point under
the same name, neither is loaded (both are ``failed``, with an error naming both), whatever
the order in which ``importlib.metadata`` finds them. Which one ``importlib.metadata`` finds
first depends on ``sys.path`` and directory order, and a checkpoint naming the plugin must
never be served by the wrong one. ``EBMFLOW_BLOCK_PLUGINS`` with one of the distribution
names resolves it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any, NamedTuple

from ebmflow.registry.names import normalize_plugin_name
from ebmflow.registry.records import PluginEntry

ENTRY_POINT_GROUP = "ebmflow"


class Claim(NamedTuple):
    """An entry point that claims a plugin name, and the distribution that ships it."""

    entry_point: Any
    distribution: str | None
    version: str | None


def entry_point_claims(
    environ: Mapping[str, str],
) -> tuple[dict[str, list[Claim]], list[PluginEntry]]:
    """The installed entry points that ``environ`` lets load, grouped by plugin name in the
    order ``importlib.metadata`` lists them, and a ``disabled`` record for each of the
    others, saying which variable disabled it."""
    only = env_list(environ.get("EBMFLOW_PLUGINS"))
    blocked = env_list(environ.get("EBMFLOW_BLOCK_PLUGINS")) or set()
    claims: dict[str, list[Claim]] = {}
    disabled = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        names = {normalize_plugin_name(n) for n in (ep.name, dist_name) if n}
        if names & blocked:
            disabled.append(
                PluginEntry(
                    ep.name,
                    None,
                    dist_name,
                    version,
                    "disabled",
                    "blocked by EBMFLOW_BLOCK_PLUGINS",
                )
            )
        elif only is not None and not names & only:
            disabled.append(
                PluginEntry(
                    ep.name, None, dist_name, version, "disabled", "not listed in EBMFLOW_PLUGINS"
                )
            )
        else:
            claims.setdefault(ep.name, []).append(Claim(ep, dist_name, version))
    return claims, disabled


def shared_name_error(name: str, claims: list[Claim]) -> str | None:
    """The error that refuses plugin ``name`` when more than one distribution claims it
    (see the module docstring), or None when one distribution does."""
    if len({normalize_plugin_name(claim.distribution or "") for claim in claims}) <= 1:
        return None
    listed = ", ".join(sorted(f"{claim.distribution} {claim.version}" for claim in claims))
    return (
        f"the plugin name {name!r} is claimed by {len(claims)} distributions: "
        f"{listed}; none of them is loaded. Uninstall one, or disable it with "
        f"EBMFLOW_BLOCK_PLUGINS=<its distribution>"
    )


def env_list(value: str | None) -> set[str] | None:
    """A comma-separated list of plugin names, normalised; None when the variable is unset."""
    if value is None:
        return None
    return {normalize_plugin_name(item.strip()) for item in value.split(",") if item.strip()}
