"""Plugin discovery: real throwaway distributions on sys.path, found through their metadata."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_distributions import (
    ABSTRACT_ADAPTER,
    BROKEN_IMPORT,
    GOOD_ADAPTER,
    NOT_AN_ADAPTER,
    PluginSite,
)

from crmphone.adapters.base import Adapter
from crmphone.adapters.registry import (
    ENTRY_POINT_GROUP,
    InstalledPlugin,
    installed_plugins,
    load_adapter_class,
)
from crmphone.errors import ConfigError, PluginError

OURS = ("goodcrm", "brokencrm", "notadapter")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    """A place for throwaway plugin distributions; their modules are forgotten afterwards."""
    plugin_site = PluginSite(tmp_path, monkeypatch)
    yield plugin_site
    plugin_site.forget_modules()


@pytest.fixture
def three(site: PluginSite) -> PluginSite:
    """Three distributions: one good plugin, one whose import fails, one naming a non-Adapter."""
    good, broken, other = (site.module_name(s) for s in ("goodcrm", "brokencrm", "notadapter"))
    site.distribution(
        "crmphone-goodcrm",
        version="1.2.3",
        entry_points={"goodcrm": f"{good}:GoodAdapter"},
        modules={good: GOOD_ADAPTER.format(cls="GoodAdapter")},
    )
    site.distribution(
        "crmphone-brokencrm",
        version="0.9",
        entry_points={"brokencrm": f"{broken}:BrokenAdapter"},
        modules={broken: BROKEN_IMPORT},
    )
    site.distribution(
        "crmphone-notadapter",
        version="2.0",
        entry_points={"notadapter": f"{other}:Helper"},
        modules={other: NOT_AN_ADAPTER.format(cls="Helper")},
    )
    return site


def by_name(plugins: tuple[InstalledPlugin, ...]) -> dict[str, InstalledPlugin]:
    return {plugin.name: plugin for plugin in plugins}


def test_listing_reads_metadata_without_importing_anything(three: PluginSite) -> None:
    """Without load, every plugin is listed with its distribution and file, and none is imported."""
    plugins = by_name(installed_plugins(names=OURS))
    assert set(plugins) == set(OURS)
    good = plugins["goodcrm"]
    assert good.value == f"{three.module_name('goodcrm')}:GoodAdapter"
    assert (good.distribution, good.version) == ("crmphone-goodcrm", "1.2.3")
    assert good.location is not None
    assert Path(good.location).name == f"{three.module_name('goodcrm')}.py"
    assert good.description is None
    assert good.ok
    assert not [name for name in sys.modules if name.endswith(three.token)]


def test_listing_without_names_includes_every_entry_point(three: PluginSite) -> None:
    """The full listing holds ours among whatever else is installed, sorted by name."""
    plugins = installed_plugins()
    names = [plugin.name for plugin in plugins]
    assert set(OURS) <= set(names)
    assert names == sorted(names)
    assert not [name for name in sys.modules if name.endswith(three.token)]


def test_listing_with_load_reports_broken_plugins_instead_of_raising(three: PluginSite) -> None:
    """load=True fills the description of a good plugin and the error of each bad one."""
    plugins = by_name(installed_plugins(load=True, names=OURS))
    assert plugins["goodcrm"].description == "A plugin that loads"
    assert plugins["goodcrm"].error is None
    broken = plugins["brokencrm"]
    assert not broken.ok
    assert broken.error is not None
    assert "crmphone-brokencrm 0.9" in broken.error
    assert "ModuleNotFoundError" in broken.error
    assert "crmphone_vendor_sdk_that_is_not_installed" in broken.error
    other = plugins["notadapter"]
    assert other.error is not None
    assert "not a subclass of crmphone.adapters.base.Adapter" in other.error
    assert other.to_json()["status"] == "error"
    assert plugins["goodcrm"].to_json()["status"] == "ok"


def test_load_imports_only_the_named_plugin(three: PluginSite) -> None:
    """Loading one plugin returns its Adapter class and imports none of the others."""
    adapter_class = load_adapter_class("goodcrm")
    assert issubclass(adapter_class, Adapter)
    assert adapter_class.__name__ == "GoodAdapter"
    assert adapter_class.description == "A plugin that loads"
    imported = {name for name in sys.modules if name.endswith(three.token)}
    assert imported == {three.module_name("goodcrm")}


def test_a_missing_plugin_lists_the_installed_ones_and_how_to_install(three: PluginSite) -> None:
    """A name nobody provides: the message lists installed names, suggests pip and the spelling."""
    with pytest.raises(PluginError) as caught:
        load_adapter_class("goodcmr", key="adapters[0].name")
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.plugin == "goodcmr"
    assert error.key == "adapters[0].name"
    message = str(error)
    assert message.startswith("adapters[0].name: ")
    assert 'no adapter plugin named "goodcmr" is installed' in message
    assert "brokencrm, goodcrm, notadapter" in message  # what is there, sorted
    assert "check the spelling" in message
    assert "pip install crmphone-goodcmr" in message


def test_a_plugin_that_fails_to_import_is_chained_and_named(three: PluginSite) -> None:
    """The ImportError is chained; the message names the distribution, version and entry point."""
    with pytest.raises(PluginError) as caught:
        load_adapter_class("brokencrm")
    error = caught.value
    assert isinstance(error.__cause__, ImportError)
    message = str(error)
    assert "crmphone-brokencrm 0.9" in message
    assert f"{three.module_name('brokencrm')}:BrokenAdapter" in message
    assert "fails to import" in message
    assert "crmphone_vendor_sdk_that_is_not_installed" in message
    assert "fix or reinstall that distribution" in message


def test_a_missing_class_in_a_good_module_is_an_import_failure(site: PluginSite) -> None:
    """An entry point naming an attribute the module lacks reports the AttributeError."""
    module = site.module_name("typo")
    site.distribution(
        "crmphone-typo",
        entry_points={"typo": f"{module}:TypoAdapter"},
        modules={module: GOOD_ADAPTER.format(cls="RealAdapter")},
    )
    with pytest.raises(PluginError, match="AttributeError") as caught:
        load_adapter_class("typo")
    assert isinstance(caught.value.__cause__, AttributeError)
    assert "crmphone-typo 1.0" in str(caught.value)


def test_an_entry_point_naming_something_else_says_what_it_must_name(three: PluginSite) -> None:
    """A class that is not an Adapter subclass is refused with what it is and what it should be."""
    with pytest.raises(PluginError) as caught:
        load_adapter_class("notadapter")
    message = str(caught.value)
    assert f"the class {three.module_name('notadapter')}.Helper" in message
    assert "crmphone-notadapter 2.0" in message
    assert "not a subclass of crmphone.adapters.base.Adapter" in message
    assert "must name the plugin's Adapter class" in message


def test_an_entry_point_naming_an_instance_is_refused(site: PluginSite) -> None:
    """An object that is not a class at all is refused too, saying what type it is."""
    module = site.module_name("instance")
    site.distribution(
        "crmphone-instance",
        entry_points={"instance": f"{module}:ADAPTER"},
        modules={module: "ADAPTER = object()\n"},
    )
    with pytest.raises(PluginError, match="which is an instance of object, not a subclass"):
        load_adapter_class("instance")


def test_an_abstract_adapter_names_the_hooks_it_lacks(site: PluginSite) -> None:
    """An Adapter subclass that does not implement log_call is refused at load, not at use."""
    module = site.module_name("abstract")
    site.distribution(
        "crmphone-abstract",
        entry_points={"abstract": f"{module}:HalfAdapter"},
        modules={module: ABSTRACT_ADAPTER.format(cls="HalfAdapter")},
    )
    with pytest.raises(PluginError, match="does not implement log_call"):
        load_adapter_class("abstract")


def test_two_distributions_with_one_name_are_named_both(site: PluginSite) -> None:
    """The same entry point name from two distributions is a conflict naming both, never a guess."""
    first, second = site.module_name("first"), site.module_name("second")
    site.distribution(
        "crmphone-twin",
        version="1.0",
        entry_points={"twin": f"{first}:TwinAdapter"},
        modules={first: GOOD_ADAPTER.format(cls="TwinAdapter")},
    )
    site.distribution(
        "other-twin",
        version="3.1",
        entry_points={"twin": f"{second}:TwinAdapter"},
        modules={second: GOOD_ADAPTER.format(cls="TwinAdapter")},
    )
    with pytest.raises(PluginError) as caught:
        load_adapter_class("twin")
    message = str(caught.value)
    assert "crmphone-twin 1.0" in message
    assert "other-twin 3.1" in message
    assert "uninstall all but one" in message
    listed = [plugin for plugin in installed_plugins(names=["twin"]) if plugin.name == "twin"]
    assert len(listed) == 2
    assert all(plugin.error == listed[0].error and not plugin.ok for plugin in listed)
    assert not [name for name in sys.modules if name.endswith(site.token)]


def test_a_plugin_outside_the_allow_list_is_refused_before_import(three: PluginSite) -> None:
    """A name not in the allow list is refused with the key and the fix, and nothing is imported."""
    with pytest.raises(PluginError) as caught:
        load_adapter_class("goodcrm", allow=["salesforce", "zendesk"])
    error = caught.value
    assert error.key == "plugins.allow"
    assert error.plugin == "goodcrm"
    message = str(error)
    assert "not allowed (allowed: salesforce, zendesk)" in message
    assert 'add "goodcrm" to the plugins.allow list' in message
    assert not [name for name in sys.modules if name.endswith(three.token)]


def test_an_empty_allow_list_allows_nothing(three: PluginSite) -> None:
    """An empty allow list is not "no list": every plugin is refused."""
    with pytest.raises(PluginError, match=r"not allowed \(allowed: nothing\)"):
        load_adapter_class("goodcrm", allow=())


def test_an_allowed_plugin_loads(three: PluginSite) -> None:
    """A name on the allow list loads as usual."""
    assert load_adapter_class("goodcrm", allow={"goodcrm"}).__name__ == "GoodAdapter"


def test_an_allowed_but_missing_plugin_still_says_how_to_install(three: PluginSite) -> None:
    """Allowing a name does not make it installed: the missing-plugin message follows."""
    with pytest.raises(PluginError, match="pip install crmphone-absent"):
        load_adapter_class("absent", allow={"absent"})


def test_the_group_is_the_documented_one() -> None:
    """Plugins declare themselves under the group the design names."""
    assert ENTRY_POINT_GROUP == "crmphone.adapters"
