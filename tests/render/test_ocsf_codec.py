"""The OCSF codec lives with the renderers (``render.ocsf_codec``), not in the alert model, and
``Alert.to_ocsf()``/``Alert.from_ocsf()`` still reach it (through the renderer registry)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import orjson

import unbacked.model.alert as model_alert
from tests.render._alerts import plain_alert, rich_alert
from unbacked.model.alert import Alert
from unbacked.render.ocsf import OcsfRenderer
from unbacked.render.ocsf_codec import OCSF_VERSION, alert_from_ocsf, alert_to_ocsf

#: field names of the OCSF Detection Finding that only the codec writes
OCSF_FIELDS = {
    "class_uid",
    "category_uid",
    "type_uid",
    "activity_id",
    "finding_info",
    "first_seen_time",
    "last_seen_time",
    "related_analytics",
    "unmapped",
    "parent_process",
    "cmd_line",
    "created_time",
    "attacks",
}


def test_the_model_holds_no_ocsf_field_names() -> None:
    tree = ast.parse(Path(model_alert.__file__).read_text(encoding="utf-8"))
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert strings & OCSF_FIELDS == set()
    assert not hasattr(model_alert, "OCSF_VERSION")


def test_the_ocsf_renderer_carries_the_codec() -> None:
    assert OcsfRenderer.encode is alert_to_ocsf
    assert OcsfRenderer.decode is alert_from_ocsf


def test_to_ocsf_is_the_codec() -> None:
    for alert in (rich_alert(), plain_alert(1), plain_alert(2)):
        d = alert.to_ocsf()
        assert d == alert_to_ocsf(alert)
        assert d["class_uid"] == 2004
        assert d["metadata"]["version"] == OCSF_VERSION


def test_to_ocsf_round_trips() -> None:
    for alert in (rich_alert(), plain_alert(1)):
        d = alert.to_ocsf()
        text = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
        back = Alert.from_ocsf(json.loads(text))
        assert back == alert_from_ocsf(json.loads(text))
        assert back.to_ocsf() == d
        assert orjson.dumps(back.to_ocsf(), option=orjson.OPT_SORT_KEYS) == text
