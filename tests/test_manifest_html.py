"""OUT/report.html (issue 11): one self-contained page, opened in headless Chromium with the network
off: no console errors, no request beyond the file itself, every chart drawn and not empty."""

from __future__ import annotations

import json
import re

from conftest import cli, open_in_chromium


def test_the_main_job_writes_a_report_a_browser_shows(tmp_path):
    out = tmp_path / "out"
    result = cli("run", "models/digits_mlp.toml", "--epochs", "3", "--recipe", "export/mobile.toml",
                 "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["report"] == {"html": "report.html"}
    page = (out / "report.html").read_text()
    assert "<script" not in page and "<link" not in page and not re.search(r"url\((?!#)", page)  # nothing to fetch
    seen = open_in_chromium(out / "report.html", tmp_path / "report.png")
    assert seen["errors"] == [] and seen["requests"] == [(out / "report.html").as_uri()]
    # no sparsity chart: nothing is pruned (it was drawn with empty bars)
    assert set(seen["charts"]) == {"chart-size", "chart-latency", "chart-training"}
    for name, chart in seen["charts"].items():
        assert chart["width"] > 200 and chart["height"] > 150 and chart["paths"] >= 5, name
    for entry in manifest["artifacts"]:  # the table: one row per artifact with its status
        assert f"{entry['name']}\t{entry['format']}\t{entry['precision']}" in seen["text"]
    assert "VERIFIED" in seen["text"] and "tensorflow\t2.21.0" in seen["text"]
    for entry in manifest["artifacts"]:  # every TFLite file: flash, RAM, TFLite Micro coverage
        fit = entry["device_fit"]
        assert fit["flash_bytes"] == entry["bytes"] and 0 < fit["arena_estimate_bytes"] <= fit["activation_bytes_total"]
        assert f"{entry['name']}\t" in seen["text"].split("Device fit")[1]
    assert (tmp_path / "report.png").stat().st_size > 20_000


def test_a_report_that_cannot_be_drawn_leaves_the_verdict_alone(tmp_path, monkeypatch):
    import dnnkit.jobs.finish
    from dnnkit.jobs.finish import finish

    def broken(manifest, out):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(dnnkit.jobs.finish, "write_html_report", broken)
    manifest = {"recipe": {"name": "r", "verify": {}}, "reference": {"head": "multiclass"},
                "artifacts": [{"name": "a", "status": "verified"}]}
    done = finish(manifest, tmp_path)
    assert done["status"] == "verified"
    assert done["report"] == {"html": None, "error": "RuntimeError: no fonts"}
    assert json.loads((tmp_path / "manifest.json").read_text())["report"]["error"] == "RuntimeError: no fonts"
    assert not (tmp_path / "report.html").exists()


def test_the_report_names_a_near_constant_reference_and_a_larger_file():
    from dnnkit.manifest.html import _notes

    manifest = {"reference": {"bytes": 10_240, "warnings": ["the reference predicts class 1 for 200 of 200 inputs"]},
                "artifacts": [{"name": "tflite_int8", "format": "tflite", "precision": "int8", "bytes": 86_630,
                               "fallbacks": ["unroll_recurrent"]}]}
    notes = _notes(manifest)
    assert "WARNING reference: the reference predicts class 1 for 200 of 200 inputs" in notes
    assert "LARGER tflite_int8: 84.6 KB, 8.5x the reference model" in notes
    assert _notes({"reference": {}, "artifacts": []}) == ""


def test_chart_labels_that_coincide_are_one_label_and_tensors_read_as_layers():
    from dnnkit.manifest.html import _label_groups, _layer_label, _sparsity_chart

    points = [(2.30, 0.9737, "tflite_fp32", "verified"), (2.31, 0.9737, "tflite_dynamic_int8", "verified"),
              (2.25, 0.9737, "tflite_int8", "verified"), (8.5, 0.9737, "onnx_fp32", "verified"),
              (2.3, 0.6316, "tflite_fp16", "failed")]
    groups = _label_groups(points)
    assert sorted(map(sorted, groups.values())) == [["onnx_fp32"], ["tflite_dynamic_int8", "tflite_fp32", "tflite_int8"],
                                                    ["tflite_fp16"]]
    assert _layer_label("cancer_1/dense_1/MatMul;cancer_1/dense_1/Relu") == "dense_1"
    assert _layer_label("StatefulPartitionedCall:0") == "model output"
    unpruned = {"artifacts": [{"name": "a", "precision": "fp32", "sparsity": {"overall": 0.0, "tensors": {"w": 0.0}}}]}
    assert _sparsity_chart(unpruned) is None
