"""The docs: the threshold table is the defaults, not a copy that drifted; no half-done merge."""

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


def test_no_document_holds_a_merge_left_half_done():
    documents = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]
    marked = [f"{path.name}:{n}" for path in documents for n, line in enumerate(path.read_text().splitlines(), 1)
              if re.match(r"^(<{7} |>{7} |={7}$)", line)]  # fmt: skip
    assert marked == []
