"""The one plugin manager: loads plugins, collects filters and generators, resolves ``--plugins``.

Plugins come from the ``ggtqc`` entry-point group, built-ins included (ggtqc's own
pyproject declares them there). ``GGTQC_LOAD_PLUGINS`` is an allow-list of the other
packages' entry-point names (set to an empty string, it loads none of them); the built-ins
always load, and ``--plugins`` chooses among filters. A plugin that fails to import is
reported and skipped, so one broken package does not take the others down.

Hooks are called through pluggy's hook callers, once per plugin so that the host knows
which plugin registered what: wrappers (``@hookimpl(wrapper=True)``) and
``manager.enable_tracing()`` or ``add_hookcall_monitoring`` see every call.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pluggy

from ggtqc import hookspecs
from ggtqc.filters import Field, Filter
from ggtqc.generators import Generator

ENTRY_POINT_GROUP = "ggtqc"
ALLOW_LIST_VARIABLE = "GGTQC_LOAD_PLUGINS"


class PluginError(Exception):
    """A plugin or a plugin selection cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Entry:
    """A registered filter or generator class and where it came from."""

    cls: type
    plugin: str
    package: str
    """Distribution that provides the plugin, as ``name version``."""


@dataclass
class Host:
    manager: pluggy.PluginManager = field(default_factory=lambda: _new_manager())
    packages: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Entry points that could not be loaded, with the reason."""

    def register(self, plugin: object, name: str, package: str = "(registered in code)") -> None:
        try:
            self.manager.register(plugin, name=name)
        except ValueError as e:
            raise PluginError(f"plugin {name!r} cannot be registered: {e}") from None
        self.packages[name] = package

    def load_entry_points(self) -> None:
        allowed = os.environ.get(ALLOW_LIST_VARIABLE)
        allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        seen = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or (allow is not None and ep.name not in allow and not _builtin(ep)):
                continue
            seen.add(ep.name)
            package = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "(unknown package)"
            try:
                plugin = ep.load()
            except Exception as e:  # any import-time failure of third-party code
                self.failures[ep.name] = f"{package}: {type(e).__name__}: {e}"
                continue
            self.register(plugin, ep.name, package)
        for name in sorted((allow or set()) - seen):
            self.failures[name] = f"named in {ALLOW_LIST_VARIABLE}, but no installed package has a ggtqc plugin of that name"

    def filters(self) -> dict[str, Entry]:
        """Every registered filter by name."""
        return self._collect("ggtqc_register_filters", Filter, _check_filter_class)

    def generators(self) -> dict[str, Entry]:
        """Every registered generator by name."""
        return self._collect("ggtqc_register_generators", Generator, _check_generator_class)

    def _collect(self, hook_name: str, base: type, check: Callable) -> dict[str, Entry]:
        kind = base.__name__.lower()
        found: dict[str, Entry] = {}
        impls = [i for i in getattr(self.manager.hook, hook_name).get_hookimpls() if not (i.wrapper or i.hookwrapper)]
        for impl in impls:
            plugin = impl.plugin_name

            def register(cls: type, _plugin: str = plugin) -> None:
                check(cls, _plugin)
                if cls.name in found:
                    raise PluginError(
                        f"{kind} name {cls.name!r} is registered by both plugin "
                        f"{found[cls.name].plugin!r} and plugin {_plugin!r}; uninstall or block one "
                        f"(set {ALLOW_LIST_VARIABLE})"
                    )
                found[cls.name] = Entry(cls, _plugin, self.packages.get(_plugin, "?"))

            # the hook caller of this plugin's implementation and every wrapper
            others = [i.plugin for i in impls if i.plugin is not impl.plugin]
            self.manager.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
        return found


def load_host() -> Host:
    host = Host()
    host.load_entry_points()
    return host


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("ggtqc")
    manager.add_hookspecs(hookspecs)
    return manager


def _builtin(ep: importlib.metadata.EntryPoint) -> bool:
    """An entry point of ggtqc's own package: a built-in filter or generator."""
    return ep.value.startswith("ggtqc.") and (ep.dist is None or ep.dist.name.lower() == "ggtqc")


def _check_generator_class(cls: object, plugin: str) -> None:
    where = f"plugin {plugin!r} registered {cls!r}"
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise PluginError(f"{where}, which is not a ggtqc.generators.Generator subclass")
    for attr in ("name", "version"):
        if not getattr(cls, attr, None):
            raise PluginError(f"{where} without a {attr!r}")


def _check_filter_class(cls: object, plugin: str) -> None:
    where = f"plugin {plugin!r} registered {cls!r}"
    if not (isinstance(cls, type) and issubclass(cls, Filter)):
        raise PluginError(f"{where}, which is not a ggtqc.Filter subclass")
    for attr in ("name", "version", "fields"):
        if not getattr(cls, attr, None):
            raise PluginError(f"{where} without a {attr!r}")
    if not all(isinstance(f, Field) for f in cls.fields):
        raise PluginError(f"{where}: 'fields' must hold ggtqc.Field objects")
    names = [f.name for f in cls.fields]
    if len(set(names)) != len(names):
        raise PluginError(f"{where}: field names repeat")


def select_filters(spec: str, available: dict[str, Entry]) -> list[str]:
    """Resolve ``--plugins``: ``all``, a comma list, or ``all,-name`` exclusions.

    ``all`` leaves out opt-in filters (``Filter.opt_in``); name them to add them.

    Returns names in run order: cheap filters first.
    """
    chosen: list[str] = []
    excluded: set[str] = set()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        name = token[1:] if token.startswith("-") else token
        if name != "all" and name not in available:
            raise PluginError(_unknown(name, available))
        if token.startswith("-"):
            if name == "all":
                raise PluginError("'-all' excludes everything; name the filters to run instead")
            excluded.add(name)
        elif name == "all":
            chosen.extend(n for n, entry in available.items() if not entry.cls.opt_in)
        else:
            chosen.append(name)
    names = [n for n in dict.fromkeys(chosen) if n not in excluded]
    if not names:
        raise PluginError(f"--plugins {spec!r} selects no filter; available: {', '.join(sorted(available)) or 'none'}{_allow_list_note()}")
    return sorted(names, key=lambda n: (available[n].cls.cost, n))


def _unknown(name: str, available: dict[str, Entry]) -> str:
    close = difflib.get_close_matches(name, list(available), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown filter {name!r}{hint} (available: {', '.join(sorted(available)) or 'none'}; see 'ggtqc plugins'){_allow_list_note()}"


def _allow_list_note() -> str:
    """Where the allow-list is set, a reminder that it limits which plugins load."""
    allowed = os.environ.get(ALLOW_LIST_VARIABLE)
    if allowed is None:
        return ""
    return f"; {ALLOW_LIST_VARIABLE}={allowed!r} limits which installed plugins load"
