"""report.html's sections on using the files: each file's inputs and outputs as its runtime sees them, where it
is and how to load it, what the files store (labels, input normalization), and the reference's scores per class."""

from __future__ import annotations

import html
from typing import Any


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


LOAD = {"tflite": "from ai_edge_litert.interpreter import Interpreter\n"
                  "interpreter = Interpreter(model_path=\"{path}\"); interpreter.allocate_tensors()\n"
                  "run = interpreter.get_signature_runner(\"serving_default\")",
        "onnx": "import onnxruntime as ort\nsession = ort.InferenceSession(\"{path}\")",
        "saved_model": "import tensorflow as tf\nrun = tf.saved_model.load(\"{path}\").signatures[\"serving_default\"]"}


def use_section(manifest: dict[str, Any]) -> str:
    """How to use each file: where it is, its inputs and outputs as its runtime sees them (int8 scale and zero
    point), a load snippet; and the labels and input normalization stored inside the files."""
    rows, snippets = [], []
    for e in manifest["artifacts"]:
        for t in e.get("signature") if isinstance(e.get("signature"), list) else []:
            quant = f"{t['scale']:.6g} / {t['zero_point']}" if "scale" in t else "-"
            rows.append(f"<tr><td>{_e(e['name'])}</td><td>{_e(e.get('path'))}</td><td>{_e(t['io'])}</td>"
                        f"<td>{_e(t['name'])}</td><td>{_e(t['shape'])}</td><td>{_e(t['dtype'])}</td>"
                        f"<td>{_e(quant)}</td></tr>")
        if e["format"] in LOAD and e.get("status") == "verified" and e["format"] not in [f for f, _ in snippets]:
            snippets.append((e["format"], LOAD[e["format"]].replace("{path}", str(e.get("path")))))
    if not rows:
        return ""
    meta = next((e["metadata"] for e in manifest["artifacts"] if isinstance(e.get("metadata"), dict)), {})
    norm = meta.get("input_normalization") or {}
    inside = ", ".join(f"{n.get('class')} {n.get('layer')}" for n in norm.get("in_model") or []) or "none"
    facts = (f"<p id='stored'>Stored in each file: labels {_e(meta.get('labels') or 'none')}; input normalization "
             f"before the model {_e(norm.get('pipeline') or 'none')}, inside it {_e(inside)}.</p>")
    code = "".join(f"<pre>{_e(text)}</pre>" for _, text in snippets)
    return ("<h2>Inputs, outputs and use</h2><table id='signature'><tr><th>artifact</th><th>file</th><th>io</th>"
            "<th>name</th><th>shape</th><th>dtype</th><th>int8 scale / zero point</th></tr>" + "".join(rows)
            + "</table>" + facts + code)


def per_class_section(manifest: dict[str, Any]) -> str:
    """The reference model's precision, recall, F1 and support per class on the test split."""
    per = manifest["reference"].get("per_class")
    if not per:
        return ""
    labels = next((e["metadata"].get("labels") for e in manifest["artifacts"] if isinstance(e.get("metadata"), dict)
                   and e["metadata"].get("labels")), None) or []
    rows = "".join(f"<tr><td>{_e(labels[int(c)] if int(c) < len(labels) else c)}</td><td class='num'>"
                   f"{_num(v['precision'])}</td><td class='num'>{_num(v['recall'])}</td><td class='num'>"
                   f"{_num(v['f1'])}</td><td class='num'>{v['support']}</td></tr>" for c, v in per.items())
    return ("<h2>Per class (the reference, test split)</h2><table id='per-class'><tr><th>class</th><th>precision</th>"
            "<th>recall</th><th>F1</th><th>support</th></tr>" + rows + "</table>")
