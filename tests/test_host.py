import pytest

from ggtqc import Field, Filter, hookimpl
from ggtqc.host import Host, PluginError, load_host, select_filters


class Cheap(Filter):
    name = "cheap"
    version = "1"
    cost = 0.5
    fields = (Field("v", "higher", 0.5),)


class Costly(Filter):
    name = "costly"
    version = "1"
    cost = 9.0
    fields = (Field("v", "lower", 0.5),)


class Plugin:
    def __init__(self, *classes):
        self.classes = classes

    @hookimpl
    def ggtqc_register_filters(self, register):
        for cls in self.classes:
            register(cls)


def test_builtin_filters_come_through_the_entry_point_group():
    entry = load_host().filters()["resolution"]
    assert entry.plugin == "resolution"
    assert entry.package.startswith("ggtqc ")
    assert entry.cls.__module__ == "ggtqc.plugins.resolution"


def test_allow_list_limits_third_party_plugins_and_keeps_the_builtins(monkeypatch, plugin_site):
    monkeypatch.syspath_prepend(str(plugin_site))  # the test plugin package, installed with pip
    assert {"meangap", "resolution"} <= set(load_host().filters())
    monkeypatch.setenv("GGTQC_LOAD_PLUGINS", "")
    builtins = load_host().filters()
    assert "meangap" not in builtins and {"resolution", "ssim", "color"} <= set(builtins)
    monkeypatch.setenv("GGTQC_LOAD_PLUGINS", "testplugin,tsetplugin")
    host = load_host()
    assert {"meangap", "resolution"} <= set(host.filters())
    assert host.failures == {"tsetplugin": "named in GGTQC_LOAD_PLUGINS, but no installed package has a ggtqc plugin of that name"}
    with pytest.raises(PluginError, match="GGTQC_LOAD_PLUGINS='testplugin,tsetplugin' limits which installed plugins load"):
        select_filters("mine", host.filters())


class Broken:
    @hookimpl
    def ggtqc_register_filters(self, register):
        raise RuntimeError("cannot register")


class Guard:
    """A wrapper around every plugin's registration that keeps one failure from stopping the rest."""

    def __init__(self, caught):
        self.caught = caught

    @hookimpl(wrapper=True)
    def ggtqc_register_filters(self, register):
        try:
            return (yield)
        except RuntimeError as e:
            self.caught.append(str(e))
            return []


def test_hooks_are_called_through_pluggy_so_wrappers_and_monitoring_see_them():
    host, caught, calls = Host(), [], []
    host.register(Plugin(Cheap), "first")
    host.register(Broken(), "broken")
    host.register(Plugin(Costly), "last")
    host.register(Guard(caught), "guard")
    host.manager.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append((name, [i.plugin_name for i in impls])), lambda *a: None)
    filters = host.filters()
    assert {name: entry.plugin for name, entry in filters.items()} == {"cheap": "first", "costly": "last"}
    assert caught == ["cannot register"]
    assert sorted(calls) == sorted(("ggtqc_register_filters", [name, "guard"]) for name in ("first", "broken", "last"))


def test_plugin_registered_in_code_and_its_source():
    host = Host()
    host.register(Plugin(Cheap, Costly), "mine")
    filters = host.filters()
    assert filters["cheap"].cls is Cheap and filters["cheap"].plugin == "mine"
    host.manager.unregister(name="mine")
    assert host.filters() == {}


def test_duplicate_filter_names_name_both_plugins():
    host = Host()
    host.register(Plugin(Cheap), "first")
    host.register(Plugin(Cheap), "second")
    with pytest.raises(PluginError, match="'cheap' is registered by both plugin 'first' and plugin 'second'"):
        host.filters()


@pytest.mark.parametrize(
    "bad,message",
    [
        (int, "not a ggtqc.Filter subclass"),
        (type("NoFields", (Filter,), {"name": "x", "version": "1", "fields": ()}), "without a 'fields'"),
        (type("Twice", (Filter,), {"name": "x", "version": "1", "fields": (Field("a", "higher", 1), Field("a", "lower", 1))}), "repeat"),
    ],
)
def test_malformed_filter_classes_are_refused(bad, message):
    host = Host()
    host.register(Plugin(bad), "bad")
    with pytest.raises(PluginError, match=message):
        host.filters()


def test_field_direction_is_checked():
    with pytest.raises(ValueError, match="better must be"):
        Field("x", "up", 1.0)


def test_select_all_orders_cheap_first():
    host = Host()
    host.register(Plugin(Costly, Cheap), "p")
    available = host.filters()
    assert select_filters("all", available) == ["cheap", "costly"]
    assert select_filters("costly,cheap", available) == ["cheap", "costly"]
    assert select_filters("all,-cheap", available) == ["costly"]
    assert select_filters(" costly , costly ", available) == ["costly"]


def test_select_errors_are_helpful():
    host = Host()
    host.register(Plugin(Costly, Cheap), "p")
    available = host.filters()
    with pytest.raises(PluginError, match="unknown filter 'chep'; did you mean 'cheap'"):
        select_filters("all,-chep", available)
    with pytest.raises(PluginError, match="selects no filter"):
        select_filters("all,-cheap,-costly", available)
    with pytest.raises(PluginError, match="'-all' excludes everything"):
        select_filters("-all", available)


def test_filter_options_are_validated():
    class WithOption(Cheap):
        options = {"side": 256}

    assert WithOption(side=512).settings == {"side": 512}
    assert WithOption().settings == {"side": 256}
    with pytest.raises(ValueError, match="no option 'size'"):
        WithOption(size=3)
