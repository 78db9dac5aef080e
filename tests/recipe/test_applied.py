"""The applied parameters a manifest records: JSON as they are, small, and the same values
albumentations drew."""

from __future__ import annotations

import json

import albumentations as A
import numpy as np

from augment.recipe.applied import applied_params


def test_applied_parameters_of_a_real_pipeline_are_plain_json() -> None:
    pipeline = A.Compose(
        [
            A.RandomBrightnessContrast(p=1.0),
            A.CoarseDropout(num_holes_range=(3, 3), p=1.0),
            A.GaussNoise(p=1.0),
        ],
        save_applied_params=True,
        seed=7,
    )
    result = pipeline(image=np.zeros((64, 64, 3), np.uint8))
    params = applied_params(result["applied_transforms"])

    assert [p["transform"] for p in params] == [
        "RandomBrightnessContrast",
        "CoarseDropout",
        "GaussNoise",
    ]
    assert all("shape" not in p for p in params)  # the image's own size: not a parameter
    # Every value a plain Python one: the manifest line is the same whichever encoder.
    text = json.dumps(params)
    assert json.loads(text) == params
    drawn = dict(result["applied_transforms"][1][1])
    assert params[1]["holes"] == drawn["holes"].tolist()
    assert "noise_map" not in params[2]  # a whole image of noise: the seed remakes it


def test_numpy_values_become_python_ones_and_big_ones_are_left_out() -> None:
    applied = [
        (
            "T",
            {
                "a": np.float64(0.5),
                "b": (np.int64(3), 2.0, None, "s", np.zeros(40)),
                "c": {1: np.arange(3), "big": np.zeros(40)},
                "d": list(range(17)),
                "e": True,
            },
        )
    ]
    (entry,) = applied_params(applied)
    assert entry == {
        "transform": "T",
        "a": 0.5,
        "b": [3, 2.0, None, "s"],
        "c": {"1": [0, 1, 2]},
        "e": True,
    }
    assert type(entry["a"]) is float and type(entry["b"][0]) is int
