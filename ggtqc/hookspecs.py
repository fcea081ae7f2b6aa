"""Hook specifications: the whole plugin API of ggtqc.

A plugin is a module (or object) with ``@hookimpl`` functions, found through the ``ggtqc``
entry-point group. The built-in filters in ``ggtqc.plugins`` are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("ggtqc")
hookimpl = pluggy.HookimplMarker("ggtqc")


@hookspec
def ggtqc_register_filters(register: Callable[..., None]) -> None:
    """Register filter classes: call ``register(FilterClass)`` once for each.

    The class must subclass :class:`ggtqc.filters.Filter`. The host owns naming: two
    filters with the same ``name`` stop the run with an error that names both plugins.
    """


@hookspec
def ggtqc_register_generators(register: Callable[..., None]) -> None:
    """Register generator classes: call ``register(GeneratorClass)`` once for each.

    The class must subclass :class:`ggtqc.generators.Generator`; names must be unique, as
    for filters.
    """
