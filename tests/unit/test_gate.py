import pytest

from pipeline.gate import decide


def test_first_version_is_promoted():
    decision = decide("test_accuracy", 0.0, "1", 0.5, None, None)
    assert decision.promote
    assert "first @champion" in decision.summary("champion")


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (0.95, 0.94, 0.0, True),
        (0.94, 0.94, 0.0, False),  # a tie is not better
        (0.93, 0.94, 0.0, False),
        (0.95, 0.94, 0.02, False),  # better, but by less than the margin
        (0.97, 0.94, 0.02, True),
        (0.96, 0.94, 0.02, True),  # exactly the margin
    ],
)
def test_candidate_must_beat_champion_by_margin(candidate, champion, margin, promote):
    decision = decide("test_accuracy", margin, "2", candidate, "1", champion)
    assert decision.promote is promote
    assert decision.tags()["gate.decision"] == ("promoted" if promote else "refused")


def test_refusal_records_both_figures():
    decision = decide("test_macro_f1", 0.01, "7", 0.9, "3", 0.95)
    tags = decision.tags()
    assert tags["gate.metric"] == "test_macro_f1"
    assert float(tags["gate.candidate_score"]) == 0.9
    assert float(tags["gate.champion_score"]) == 0.95
    assert tags["gate.champion_version"] == "3"
    summary = decision.summary("champion")
    assert summary.startswith("kept the champion")
    assert "version 7" in summary and "version 3" in summary
