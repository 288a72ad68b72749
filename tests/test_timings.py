"""python -m bigmodel_utils.timings compare: two SMOKE runs' recorded values side by side, speeds left out."""

from __future__ import annotations

import json

from bigmodel_utils import timings


def _run(root, values: dict[str, dict]):
    for name, data in values.items():
        path = root / "chapters" / f"{name}.results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")
    return root


def test_speeds_differ_and_nothing_is_reported(tmp_path):
    a = _run(tmp_path / "a", {"07_x": {"accuracy": 0.5, "finetune_seconds": 49, "key results": "0.5 in 49 s"}})
    b = _run(tmp_path / "b", {"07_x": {"accuracy": 0.5, "finetune_seconds": 61, "key results": "0.5 in 61 s"}})
    assert timings.compare_smoke(a, b) == (1, [])
    assert timings.main(["compare", str(a), str(b)]) == 0


def test_a_changed_missing_or_unreadable_result_is_reported(tmp_path, capsys):
    a = _run(tmp_path / "a", {"07_x": {"accuracy": 0.589, "loss": 1.0}, "08_y": {"auc": 0.9}, "09_z": {"n": 1},
                              "10_w": {"n": 2}})
    b = _run(tmp_path / "b", {"07_x": {"accuracy": 0.591}, "09_z": {"n": 1}, "11_v": {"n": 3}})
    (b / "chapters" / "10_w.results.json").write_text("{not json", encoding="utf-8")
    (a / "chapters" / "12_u.results.json").write_text("[1, 2]", encoding="utf-8")  # JSON, but not a record
    (b / "chapters" / "12_u.results.json").write_text("{}", encoding="utf-8")
    equal, differ = timings.compare_smoke(a, b)
    assert equal == 1
    assert differ == ["chapters/07_x.results.json: accuracy: 0.589 vs 0.591",
                      "chapters/07_x.results.json: loss: 1.0 vs '(missing)'",
                      f"chapters/08_y.results.json: missing or unreadable in {b}",
                      f"chapters/10_w.results.json: missing or unreadable in {b}",
                      f"chapters/11_v.results.json: missing or unreadable in {a}",
                      f"chapters/12_u.results.json: missing or unreadable in {a}"]
    assert timings.main(["compare", str(a), str(b)]) == 1
    assert "1 recorded values equal, 6 differ" in capsys.readouterr().out


def test_compare_says_what_to_give_it(tmp_path, capsys):
    assert timings.main(["compare", str(tmp_path)]) == 2
    assert "usage" in capsys.readouterr().out
    assert timings.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "_build/smoke" in capsys.readouterr().out


def test_a_cold_book_counts_training_once_whether_the_full_run_trained_or_loaded_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    entries = {"07_transformers_bert": {"cacheable_seconds": 550, "cache_used": True},  # loaded: a first run adds 550
               "13_gpt_from_scratch": {"cacheable_seconds": 1095, "cache_used": False},  # trained: inside its 1432
               "14_adapting_serving": {"cacheable_seconds": 700, "cache_used": True, "trained_seconds": 200}}
    walls = {"07_transformers_bert": 774, "13_gpt_from_scratch": 1432, "14_adapting_serving": 900}
    for name, values in entries.items():
        (results / f"{name}.json").write_text(json.dumps({"seconds": walls[name], "results": values}), encoding="utf-8")
    data = timings.collect(results, tmp_path / "no-smoke", tmp_path / "no-make-test.json")
    extra = {r["chapter"]: r["first_time_extra_seconds"] for r in data["chapters"] if r["full_seconds"] is not None}
    assert extra == {"07_transformers_bert": 550, "13_gpt_from_scratch": 0, "14_adapting_serving": 500}
    assert "A cold `make book` (every training from scratch) adds the first-time column: 69.3 min in all." \
        in timings.markdown(data)  # (774 + 1432 + 900 + 550 + 0 + 500) / 60 s
