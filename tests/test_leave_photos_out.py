"""scripts/leave_photos_out.py's folds: every photo held out exactly once, never in its own fold's training folder."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.data import SAMPLE_TRAIN, SAMPLE_VAL, image_files

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "leave_photos_out.py"


def _script():
    spec = importlib.util.spec_from_file_location("leave_photos_out", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_each_photo_is_held_out_once_and_never_trained_on_in_its_fold(tmp_path):
    lpo = _script()
    fold_list = lpo.folds(lpo.photo_names())
    names = sorted(SAMPLE_TRAIN + SAMPLE_VAL)
    assert sorted(n for f in fold_list for n in f) == names
    assert [len(f) for f in fold_list] == [5, 5, 5, 5]
    for (train_dir, test_dir), test in zip(lpo.make_folders(tmp_path, fold_list), fold_list):
        train = {p.name for p in image_files(train_dir)}
        assert {p.name for p in image_files(test_dir)} == set(test)
        assert not train & set(test) and train | set(test) == set(names)


def test_fixed_strength_specs_parse_as_the_mid_level():
    from engine.specs import parse_noise

    specs = _script().noise_specs()
    assert specs["gaussian"] == "gaussian:25" and specs["mix"] == "mix"
    assert all(parse_noise(s).level is not None for f, s in specs.items() if f != "mix")
