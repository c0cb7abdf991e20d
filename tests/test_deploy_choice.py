"""The depth picker: the most accurate setting within a latency budget, kept in deploy.json."""

import pytest

from unetjax.inference.deploy import deploy_choice


def test_the_depth_picker_takes_the_most_accurate_setting_within_the_budget(tmp_path):
    def row(depth, mode, latency, iou, threshold=0.5):
        return {
            "depth": depth,
            "mode": mode,
            "latency_ms": latency,
            "sweep": {"best_threshold": threshold, "validation_iou": iou},
        }

    report = {
        "split": "test",
        "device": "cpu x1",
        "step": 9,
        "results": [
            row(1, "fast", 2.0, 0.70),
            row(2, "fast", 4.0, 0.80, threshold=0.35),
            row(2, "accurate", 3.5, 0.80, threshold=0.4),
            row(3, "fast", 9.0, 0.90),
        ],
    }
    choice = deploy_choice.choose(report, 5.0, (96, 96))
    # L3 is the most accurate but over budget; L2 ties on IoU, and the faster one wins.
    assert (choice["depth"], choice["mode"], choice["threshold"]) == (2, "accurate", 0.4)
    assert choice["budget_ms"] == 5.0 and choice["image_size"] == [96, 96]
    assert deploy_choice.choose(report, 100, (96, 96))["depth"] == 3
    with pytest.raises(ValueError, match=r"fastest is L1 fast at 2.00 ms"):
        deploy_choice.choose(report, 1.0, (96, 96))

    assert deploy_choice.resolve(tmp_path, None, None).depth is None  # no deploy.json yet
    deploy_choice.write(tmp_path, choice)
    setting = deploy_choice.resolve(tmp_path, None, None)
    assert (setting.depth, setting.mode, setting.threshold) == (2, "accurate", 0.4)
    assert "deploy.json: the most accurate setting within 5 ms at 96x96 on cpu x1" in setting.reason
    given = deploy_choice.resolve(tmp_path, 1, None)  # the user's choice wins
    assert (given.depth, given.mode, given.threshold) == (1, "fast", None)
    (tmp_path / "deploy.json").write_text("{")
    with pytest.raises(ValueError, match=r"deploy\.json: not readable JSON"):
        deploy_choice.read(tmp_path)
