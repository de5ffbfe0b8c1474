import pytest

from pipeline.gate import decide


def accuracy(value: float, log_loss: float | None = None) -> dict[str, float]:
    return {"test_accuracy": value} | ({} if log_loss is None else {"test_log_loss": log_loss})


def test_first_version_is_promoted():
    decision = decide("test_accuracy", 0.0, "1", accuracy(0.5), None, None)
    assert decision.promote
    assert "first @champion" in decision.summary("champion")


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (0.95, 0.94, 0.0, True),
        (0.94, 0.94, 0.0, False),  # a tie is not better, with no tie-breaker figures
        (0.93, 0.94, 0.0, False),
        (0.95, 0.94, 0.02, False),  # better, but by less than the margin
        (0.97, 0.94, 0.02, True),
        (0.96, 0.94, 0.02, True),  # exactly the margin
    ],
)
def test_candidate_must_beat_champion_by_margin(candidate, champion, margin, promote):
    decision = decide("test_accuracy", margin, "2", accuracy(candidate), "1", accuracy(champion))
    assert decision.promote is promote
    assert decision.tags()["gate.decision"] == ("promoted" if promote else "refused")


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (accuracy(0.9944, 0.021), accuracy(0.9944, 0.030), 0.0, True),  # tied, surer: lower log-loss
        (accuracy(0.9944, 0.030), accuracy(0.9944, 0.021), 0.0, False),
        (accuracy(0.9944, 0.030), accuracy(0.9944, 0.030), 0.0, False),  # tied on both: not better
        (accuracy(0.95, 0.021), accuracy(0.94, 0.030), 0.02, True),  # within the margin: the tie-breaker
        (accuracy(0.93, 0.021), accuracy(0.94, 0.030), 0.02, True),  # within the margin either way
        (accuracy(0.91, 0.001), accuracy(0.94, 0.030), 0.02, False),  # worse by more than the margin
        (accuracy(0.95, 0.900), accuracy(0.94, 0.030), 0.0, True),  # no tie: the gate metric alone decides
    ],
)
def test_a_tie_is_decided_by_the_tie_breaker_in_its_own_direction(candidate, champion, margin, promote):
    decision = decide("test_accuracy", margin, "5", candidate, "4", champion)
    assert decision.promote is promote


def test_the_decision_line_and_tags_say_the_tie_and_both_tie_breaker_figures():
    decision = decide("test_accuracy", 0.0, "5", accuracy(0.9944, 0.0213), "4", accuracy(0.9944, 0.0301))
    assert decision.summary("champion") == (
        "promoted: version 5 test_accuracy=0.9944 ties @champion version 4 test_accuracy=0.9944 within the margin "
        "0, and beats it on the tie-breaker test_log_loss (0.0213 against 0.0301, lower is better)"
    )
    tags = decision.tags()
    assert (tags["gate.tie_breaker"], tags["gate.candidate_tie_score"], tags["gate.champion_tie_score"]) == (
        "test_log_loss",
        "0.0213",
        "0.0301",
    )


def test_a_regressor_ties_on_rmse_and_is_told_apart_by_mae():
    candidate, champion = {"test_rmse": 50.0, "test_mae": 39.0}, {"test_rmse": 50.0, "test_mae": 41.0}
    decision = decide("test_rmse", 0.0, "2", candidate, "1", champion)
    assert decision.promote and decision.tie_breaker == "test_mae"


def test_refusal_records_both_figures():
    decision = decide("test_macro_f1", 0.01, "7", {"test_macro_f1": 0.9}, "3", {"test_macro_f1": 0.95})
    tags = decision.tags()
    assert tags["gate.metric"] == "test_macro_f1"
    assert float(tags["gate.candidate_score"]) == 0.9
    assert float(tags["gate.champion_score"]) == 0.95
    assert tags["gate.champion_version"] == "3"
    summary = decision.summary("champion")
    assert summary.startswith("kept the champion")
    assert "version 7" in summary and "version 3" in summary
