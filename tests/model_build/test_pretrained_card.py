"""The ImageNet card's recipe text follows the kept student's configuration."""

from __future__ import annotations

from model_build.pretrained import _command_text, _distill_text

CONFIG = {
    "lr": 1e-4,
    "mix": 0.5,
    "scale_lr": 0.01,
    "ema": 0.998,
    "extra": ".mb-carry/distill/extra.npz",
    "paste": 0.5,
    "steps": 1400,
    "seed": 0,
    "holdout": 12,
    "batch": 64,
    "calib_share": 0.25,
}


def report(config: dict, step: int) -> dict:
    log = {"step": step, "calib_kl_agreement": [0.0045, 0.944]}
    return {"distillation": {"config": config, "last_log": log, "seconds": 347.2}}


def test_recipe_with_learned_scales_extra_photos_and_averaging() -> None:
    r = report(CONFIG, 1300)
    cmd = _command_text(r)
    assert "-m model_build extra-images" in cmd
    assert "--lr 0.0001 --mix 0.5 --scale-lr 0.01 --ema 0.998" in cmd
    assert "--paste 0.5" in cmd and "--seed" not in cmd
    text = _distill_text(r["distillation"])
    assert "learned along with the weights" in text
    assert "12 of them held out" in text and "tuxpaint-stamps-default" in text
    assert "1400 steps planned, stopped by the time budget" in text
    assert "exponential average (decay 0.998)" in text


def test_recipe_of_a_plain_student() -> None:
    plain = {**CONFIG, "scale_lr": 0.0, "ema": 0.0, "extra": None, "steps": 2500}
    r = report(plain, 2500)
    cmd = _command_text(r)
    assert "extra-images" not in cmd and "--paste" not in cmd and "--scale-lr" not in cmd
    text = _distill_text(r["distillation"])
    assert "the calibrated uint8 activation scales" in text
    assert "calibration images (12 of them held out) only" in text
    assert "2500 steps on one" in text and "exponential average" not in text
    assert _command_text({"distillation": None}).endswith("export-pretrained")
