"""docs/filters.md's threshold table is the defaults, not a copy that drifted."""

import re

from tests.helpers import REPO
from ggtqc.host import load_host


def test_threshold_table_matches_every_field_declared():
    text = (REPO / "docs" / "filters.md").read_text()
    table = dict(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| ([^|]+) \|", text, flags=re.M))
    declared = {}
    for name, entry in load_host().filters().items():
        for field in entry.cls.fields:
            if field.threshold is None:
                declared[f"{name}.{field.name}"] = "recorded"
            else:
                sign = "≥" if field.better == "higher" else "≤"
                declared[f"{name}.{field.name}"] = f"{sign} {field.threshold:g}"
    assert {key: value.strip() for key, value in table.items()} == declared
