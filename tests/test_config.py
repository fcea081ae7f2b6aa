import pytest

from ggtqc.config import ConfigError, load_config
from ggtqc.plugins.resolution import Resolution

FILTERS = {"resolution": Resolution}


def config(tmp_path, text):
    path = tmp_path / "qc.toml"
    path.write_text(text)
    return load_config(path, FILTERS)


def test_no_file_means_defaults():
    assert load_config(None, FILTERS)["resolution"].thresholds == {}


def test_overrides_of_options_and_thresholds(tmp_path):
    got = config(tmp_path, "[resolution]\nexpected_scale = 2\n[resolution.thresholds]\nhq_short_side = 512\naspect_error = false\n")
    assert got["resolution"].settings == {"expected_scale": 2.0}
    assert got["resolution"].thresholds == {"hq_short_side": 512.0, "aspect_error": None}


@pytest.mark.parametrize(
    "text,message",
    [
        ("[resolutoin]\n", "unknown filter 'resolutoin'; did you mean 'resolution'"),
        ("[resolution]\nexpected_scal = 2\n", "unknown option of resolution 'expected_scal'; did you mean 'expected_scale'"),
        ("[resolution.thresholds]\nhq_short = 1\n", "unknown field of resolution 'hq_short'"),
        ("[resolution.thresholds]\nscale = 'big'\n", "resolution.thresholds.scale = 'big'; give a number, or false"),
        ("[resolution.thresholds]\nscale = nan\n", "give a number"),
        ("[resolution]\nexpected_scale = true\n", "expected float"),
        ("resolution = 3\n", "must be a table"),
        ("[resolution\n", "not valid TOML"),
    ],
)
def test_bad_config_names_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(tmp_path, text)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", FILTERS)
