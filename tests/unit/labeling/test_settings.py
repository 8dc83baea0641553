from __future__ import annotations

import pytest

from loupe import settings


def test_reads_and_validates_the_template_variables():
    s = settings.from_mapping(
        {
            "LEDGER_TABLE": "ledger",
            "LABELING_THRESHOLD": "7",
            "LABEL_CLASSES": "scratch, dent",
            "WORKTEAM_ARN": "",
            "UNRELATED": "x",
        }
    )
    assert s.ledger_table == "ledger" and s.labeling_threshold == 7
    assert s.label_classes == ("scratch", "dent") and s.class_map == {"0": "scratch", "1": "dent"}
    assert s.workteam_arn is None  # CloudFormation's "" for an unset parameter
    assert s.labeling_max_per_job == 500
    blank = settings.from_mapping({"LABELING_THRESHOLD": "", "RAW_BUCKET": ""})
    assert (blank.labeling_threshold, blank.raw_bucket) == (50, None)


@pytest.mark.parametrize(
    "env",
    [{"LABELING_THRESHOLD": "0"}, {"LABELING_THRESHOLD": "many"}, {"LABEL_CLASSES": " , "}, {"LABEL_CLASSES": "a,a"}],
)
def test_bad_values_are_refused(env):
    with pytest.raises(settings.SettingsError):
        settings.from_mapping(env)


def test_require_names_the_missing_variable():
    with pytest.raises(settings.SettingsError, match="RAW_BUCKET"):
        settings.from_mapping({}).require("raw_bucket")
