"""Manifest -> ``OUT/report.html``: one self-contained page (inline CSS, charts as inline SVG drawn
by matplotlib; no script, no network) that says which artifact to ship.

Sections: the artifact table (format, precision, size, metric, parity, latency, status with the
failure reason), the metric against size and against batch-1 latency (the Pareto front and the pick
when ``dnnkit optimize`` ran), training curves from ``history.json``, per-layer sparsity, per-layer
quantization error (the selective fallback's ranking) when known, device fit of each TFLite file
(flash, activation arena, TFLite Micro op coverage), serving layouts, versions.
Every chart is a ``<figure class="chart" id="chart-NAME">`` holding one ``<svg>``.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from dnnkit.core.fileio import write_text
from dnnkit.manifest.generation import generation_html
from dnnkit.manifest.usage import per_class_section, use_section
from dnnkit.manifest.table import (larger_than_float, main_metric, parity_text, search_lines, size_text, tflm_lines,
                                   slower_than_fp32)

REPORT = "report.html"
COLOURS = {"verified": "#1a7f37", "inconclusive": "#9a6700", "failed": "#cf222e", "reference": "#0969da"}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #1f2328; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; width: 100%; } th, td { padding: 4px 8px; border-bottom: 1px solid #eaeef2;
text-align: left; vertical-align: top; } th { background: #f6f8fa; } td.num { text-align: right; }
.status { font-weight: 600; } .verified { color: #1a7f37; } .failed { color: #cf222e; }
.inconclusive { color: #9a6700; } .reason { color: #57606a; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } figure.chart { margin: 0; flex: 1 1 480px; }
figure.chart svg { width: 100%; height: auto; } figcaption { color: #57606a; font-size: 12px; }
"""


def write_html_report(manifest: dict[str, Any], out: str | Path) -> Path:
    """Write ``OUT/report.html`` for ``manifest`` (atomically) and return its path."""
    path = Path(out) / REPORT
    write_text(path, render(manifest, Path(out)))
    return path


def render(manifest: dict[str, Any], out: Path) -> str:
    """The page as a string."""
    ref = manifest["reference"]
    metric = main_metric(ref)
    charts = [c for c in (_metric_chart(manifest, metric, "size"), _metric_chart(manifest, metric, "latency"),
                          _pareto_chart(manifest), _training_chart(manifest, out), _sparsity_chart(manifest),
                          _quantization_chart(manifest)) if c]
    title = f"dnnkit report: {ref.get('spec') or out.resolve().name}"
    status = manifest.get("status", "-")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<p>Status: <span class='status {_e(status)}' id='status'>{_e(status.upper())}</span> "
             f"&middot; recipe {_e(manifest['recipe']['name'])} &middot; created {_e(manifest.get('created', '-'))}"
             f" &middot; dnnkit {_e(manifest.get('dnnkit_version', '-'))}</p>",
             "<h2>Artifacts</h2>", _artifact_table(manifest, metric), _failures(manifest), _notes(manifest)]
    if manifest.get("optimize"):
        opt = manifest["optimize"]
        chosen = ", ".join(f"{t}: {n}" for t, n in (opt.get("chosen") or {}).items()) or "none"
        parts.append(f"<p id='optimize'>optimize chose <b>{_e(chosen)}</b> "
                     f"(objective {_e(opt['goals']['objective'])}, max degradation {opt['goals']['max_degradation']:g})"
                     "</p>")
    parts += ["<h2>Charts</h2><div class='charts'>", *charts, "</div>"]
    parts += [generation_html(manifest), use_section(manifest), per_class_section(manifest)]
    parts += [_throughput_section(manifest), _device_section(manifest), _package_section(manifest),
              _timings_section(manifest), "<h2>Versions</h2>", _versions(manifest), "</body></html>"]
    return "\n".join(p for p in parts if p)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _artifact_table(manifest: dict[str, Any], metric: str | None) -> str:
    ref = manifest["reference"]
    rows = ["<table id='artifacts'><tr><th>artifact</th><th>format</th><th>precision</th><th>size</th>"
            f"<th>{_e(metric or 'metric')}</th><th>parity</th><th>p50 ms</th><th>p90 ms</th><th>status</th></tr>"]
    ref_value = (ref.get("metrics") or {}).get(metric) if metric else None
    rows.append(f"<tr><td>reference</td><td>keras</td><td>fp32</td><td class='num'>{size_text(ref.get('bytes'))}</td>"
                f"<td class='num'>{_num(ref_value)}</td><td>-</td><td>-</td><td>-</td><td>reference</td></tr>")
    for e in manifest["artifacts"]:
        lat = e.get("latency_ms") or {}
        value = (e.get("metrics") or {}).get(metric) if metric else None
        reason = f"<div class='reason'>{_e(e['failure_reason'])}</div>" if e.get("failure_reason") else ""
        rows.append(f"<tr><td>{_e(e['name'])}</td><td>{_e(e['format'])}</td><td>{_e(e['precision'])}</td>"
                    f"<td class='num'>{size_text(e.get('bytes'))}</td><td class='num'>{_num(value)}</td>"
                    f"<td>{_e(parity_text(e))}</td><td class='num'>{_num(lat.get('p50'), 3)}</td>"
                    f"<td class='num'>{_num(lat.get('p90'), 3)}</td>"
                    f"<td><span class='status {_e(e['status'])}'>{_e(e['status'].upper())}</span>{reason}</td></tr>")
    return "\n".join(rows) + "</table>"


def _throughput_section(manifest: dict[str, Any]) -> str:
    """Batch-N samples per second on one core and on all of them, per artifact (what parallel
    inference buys on this machine)."""
    rows = []
    for e in manifest["artifacts"]:
        cores = (e.get("latency_ms") or {}).get("cores")
        if cores:
            rows.append(f"<tr><td>{_e(e['name'])}</td><td class='num'>{cores['batch']}</td>"
                        f"<td class='num'>{cores['one_core_per_s']:.0f}</td><td class='num'>{cores['cores']}</td>"
                        f"<td class='num'>{cores['all_cores_per_s']:.0f}</td>"
                        f"<td class='num'>{cores['speedup']:.2f}x</td></tr>")
    if not rows:
        return ""
    return ("<h2>Throughput on one core and on all</h2><table id='throughput'><tr><th>artifact</th><th>batch</th>"
            "<th>1 core /s</th><th>cores</th><th>all cores /s</th><th>speed-up</th></tr>" + "".join(rows) + "</table>")


def _timings_section(manifest: dict[str, Any]) -> str:
    """Where the job's wall time went: its stages, and each worker process's start-up."""
    timings = manifest.get("timings") or {}
    stages = [(k, v) for k, v in timings.items() if isinstance(v, (int, float))]
    if not stages:
        return ""
    rows = "".join(f"<tr><td>{_e(k.removesuffix('_s').replace('_', ' '))}</td><td class='num'>{v:.2f}</td></tr>"
                   for k, v in stages)
    workers = "".join(
        f"<li>{_e(role)}: {'prestarted' if r.get('prestarted') else 'started when needed'}, imports "
        f"{_num(r.get('import_s'), 2)} s, the job waited {_num(r.get('waited_s'), 2)} s for it</li>"
        for role, records in (timings.get("workers") or {}).items() for r in records)
    cpu = timings.get("cpu_s") or {}
    used = (f"<p id='cpu'>CPU seconds (user + system): {sum(cpu.values()):.1f} in all; "
            + ", ".join(f"{_e(k)} {v:.1f}" for k, v in cpu.items()) + "</p>") if cpu else ""
    return ("<h2>Time</h2><p>Wall seconds per stage; conversions and their checks run side by side in two "
            "processes, so their rows overlap.</p>"
            f"<table id='timings'><tr><th>stage</th><th>seconds</th></tr>{rows}</table>"
            + (f"<ul id='workers'>{workers}</ul>" if workers else "") + used)


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _notes(manifest: dict[str, Any]) -> str:
    """What to know before shipping: a near-constant reference, files larger or slower than their float twin."""
    items = [f"<li class='failed'>WARNING reference: {_e(w)}</li>" for w in manifest["reference"].get("warnings") or []]
    items += [f"<li>{_e(line)}</li>" for line in larger_than_float(manifest) + slower_than_fp32(manifest["artifacts"])
              + search_lines(manifest["artifacts"]) + tflm_lines(manifest["artifacts"])]
    return f"<ul id='notes'>{''.join(items)}</ul>" if items else ""


def _failures(manifest: dict[str, Any]) -> str:
    items = [f"<li>{_e(f.get('message', f))}</li>" for f in manifest.get("failures") or []]
    return f"<ul id='failures'>{''.join(items)}</ul>" if items else ""


def _figure(name: str, fig: Any, caption: str) -> str:
    """The matplotlib figure as an inline SVG inside a captioned ``<figure>``."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inline SVG is HTML content
    return f"<figure class='chart' id='chart-{name}'>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def pyplot() -> Any:
    """pyplot on the file-only backend, text kept as SVG text (smaller, selectable)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    return plt


def _axes(title: str) -> tuple[Any, Any]:
    fig, ax = pyplot().subplots(figsize=(6.0, 3.6))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    return fig, ax


def _metric_chart(manifest: dict[str, Any], metric: str | None, kind: str) -> str | None:
    """The metric of each artifact against its size (KB) or batch-1 p50 latency (ms)."""
    if metric is None:
        return None
    points = []
    for e in manifest["artifacts"]:
        value = (e.get("metrics") or {}).get(metric)
        x = (e.get("bytes") or 0) / 1024 if kind == "size" else (e.get("latency_ms") or {}).get("p50")
        if value is not None and x:
            points.append((x, value, e["name"], e["status"]))
    if not points:
        return None
    fig, ax = _axes(f"{metric} against {'size' if kind == 'size' else 'batch-1 p50 latency'}")
    for x, y, name, status in points:
        ax.scatter([x], [y], color=COLOURS.get(status, "#57606a"), s=36, zorder=3)
    for (x, y), names in _label_groups(points).items():  # one label per spot: artifacts that coincide share it
        ax.annotate("\n".join(names), (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ref_value = (manifest["reference"].get("metrics") or {}).get(metric)
    if ref_value is not None:
        ax.axhline(ref_value, color=COLOURS["reference"], linestyle="--", linewidth=1, label="reference")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("size (KB)" if kind == "size" else "p50 latency (ms)")
    ax.set_ylabel(metric)
    return _figure(kind, fig, f"{len(points)} artifacts; green verified, red failed, amber inconclusive")


def _label_groups(points: list[tuple[float, float, str, str]]) -> dict[tuple[float, float], list[str]]:
    """Names by spot: points within 5 % of each other on the (log) x axis and 0.005 on the metric share one label
    (at the first such point), so that labels of artifacts of the same size and score do not print over each
    other."""
    import math

    groups: dict[tuple[float, float], list[str]] = {}
    for x, y, name, _ in sorted(points, key=lambda p: (p[0], p[1])):
        spot = next((k for k in groups if abs(math.log(x / k[0])) < 0.05 and abs(y - k[1]) < 0.005), (x, y))
        groups.setdefault(spot, []).append(name)
    return groups


def _layer_label(name: str) -> str:
    """A converter's tensor name as the Keras layer it comes from: ``cancer_1/dense_1/MatMul;...`` is
    ``dense_1``; the graph's last tensor (``StatefulPartitionedCall:0``) is the model's output."""
    first = name.split(";")[0]
    if first.startswith("StatefulPartitionedCall"):
        return "model output"
    parts = [p for p in first.split("/") if p]
    return parts[1] if len(parts) > 2 else first[-32:]


def _pareto_chart(manifest: dict[str, Any]) -> str | None:
    """dnnkit optimize's candidates: degradation against size, the Pareto front joined, the pick starred."""
    opt = manifest.get("optimize")
    rows = [r for r in (opt or {}).get("candidates", []) if r.get("bytes") and r.get("degradation") is not None]
    if not rows:
        return None
    fig, ax = _axes("optimize candidates: degradation against size")
    for r in rows:
        ax.scatter([r["bytes"] / 1024], [r["degradation"]], color=COLOURS.get(r["status"], "#57606a"),
                   marker="*" if r.get("chosen") else "o", s=140 if r.get("chosen") else 30, zorder=3)
        ax.annotate(r["name"], (r["bytes"] / 1024, r["degradation"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["bytes"])
    if front:
        ax.plot([r["bytes"] / 1024 for r in front], [r["degradation"] for r in front], color="#8250df",
                linewidth=1, label="Pareto front")
        ax.legend(fontsize=8)
    ax.axhline(opt["goals"]["max_degradation"], color="#cf222e", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("size (KB)")
    ax.set_ylabel("metric degradation")
    return _figure("pareto", fig, "star: chosen; dotted: the goal (max degradation)")


def _training_chart(manifest: dict[str, Any], out: Path) -> str | None:
    """Loss and metric per epoch from the training run's ``history.json``."""
    run_dir = (manifest.get("training") or {}).get("run_dir")
    path = out / run_dir / "history.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    history = json.loads(path.read_text(encoding="utf-8"))
    series = {k: v for k, v in (history.items() if isinstance(history, dict) else [])
              if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)}
    if not series:
        return None
    fig, (loss_ax, metric_ax) = pyplot().subplots(1, 2, figsize=(7.5, 3.2))
    others = {k: v for k, v in series.items() if "loss" not in k and k not in ("lr", "learning_rate", "epoch")}
    for ax, keys, label in ((loss_ax, [k for k in series if "loss" in k], "loss"), (metric_ax, list(others), "metric")):
        for key in keys:
            ax.plot(range(1, len(series[key]) + 1), series[key], label=key, marker="o", markersize=2)
        ax.set_title(f"training {label}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=7)
    return _figure("training", fig, f"{max(len(v) for v in series.values())} epochs ({path.relative_to(out)})")


SPARSE = 0.01  # below this share of zero weights there is no sparsity to chart


def _sparsity_chart(manifest: dict[str, Any]) -> str | None:
    """Fraction of zero weights per layer, for the artifact with the most zeros."""
    with_tensors = [e for e in manifest["artifacts"] if (e.get("sparsity") or {}).get("tensors")]
    float_ones = [e for e in with_tensors if e["precision"] == "fp32"]  # int8 rounding adds zeros of its own
    best = max(float_ones or with_tensors, key=lambda e: e["sparsity"].get("overall", 0.0), default=None)
    if best is None or best["sparsity"].get("overall", 0.0) < SPARSE:
        return None  # an unpruned model: a chart of empty bars says nothing
    tensors = best["sparsity"]["tensors"]
    names = list(tensors)[:40]
    fig, ax = _axes(f"weight sparsity per tensor: {best['name']} (overall {best['sparsity']['overall']:.1%})")
    ax.barh(range(len(names)), [tensors[n] for n in names], color="#0969da")
    ax.set_yticks(range(len(names)), [n[-32:] for n in names], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of weights that are zero")
    return _figure("sparsity", fig, f"{len(tensors)} weight tensors" + (", first 40 shown" if len(tensors) > 40
                                                                          else ""))


def _quantization_chart(manifest: dict[str, Any]) -> str | None:
    """Per-layer quantization error from a selective fallback's ranking (worst first), when one ran."""
    for e in manifest["artifacts"]:
        fb = (e.get("conversion") or {}).get("selective_fallback") or {}
        worst = [w for w in fb.get("worst_layers") or [] if isinstance(w, dict)]
        key = next((k for k in ("sqnr_db", "rmse_over_scale") if worst and k in worst[0]), None)
        if key is None:
            continue
        fig, ax = _axes(f"per-layer quantization error: {e['name']}")
        ax.barh(range(len(worst)), [w[key] for w in worst], color="#9a6700")
        ax.set_yticks(range(len(worst)), [_layer_label(str(w.get("name", "?"))) for w in worst], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("SQNR (dB, lower is worse)" if key == "sqnr_db" else "RMSE / scale (higher is worse)")
        return _figure("quantization", fig, f"the {len(worst)} layers {fb.get('ranked_by', 'the debugger')} ranks "
                                            "worst")
    return None


def _device_section(manifest: dict[str, Any]) -> str:
    """Flash, the activation arena (TFLM-style greedy plan, batch 1) and TFLM op coverage per TFLite file."""
    rows = []
    for e in manifest["artifacts"]:
        fit = e.get("device_fit")
        if not fit:
            continue
        if fit.get("error"):
            rows.append(f"<tr><td>{_e(e['name'])}</td><td class='num'>{size_text(fit.get('flash_bytes'))}</td>"
                        f"<td colspan='4' class='reason'>{_e(fit['error'])}</td></tr>")
            continue
        missing = fit["tflm_unsupported_ops"]
        tflm = fit.get("tflm") or {}
        if tflm.get("status") == "ran":
            a = tflm["arena"]
            measured = (f"{size_text(a['smallest_arena_size'])} (head {size_text(a['head'])}, "
                        f"tail {size_text(a['tail'])})")
        else:
            measured = _e(f"{tflm.get('status')}: {tflm.get('reason')}") if tflm else "-"
        if tflm.get("status") == "ran" and fit.get("tflm_arena_estimate_bytes"):
            measured += f"; estimated {size_text(fit['tflm_arena_estimate_bytes'])}"
        b = fit.get("budget")
        verdict = (f"<span class='status {'verified' if b['verdict'] == 'fits' else 'failed'}'>"
                   f"{_e(b['verdict'].replace('_', ' '))}</span> {_e(b['reason'])}" if b else "-")
        rows.append(f"<tr><td>{_e(e['name'])}</td><td class='num'>{size_text(fit['flash_bytes'])}</td>"
                    f"<td class='num'>{size_text(fit['arena_estimate_bytes'])}</td>"
                    f"<td class='num'>{size_text(fit['interpreter_arena_bytes'])}</td>"
                    f"<td class='num'>{measured}</td>"
                    f"<td>{'all ops' if not missing else 'missing: ' + _e(', '.join(missing))}</td>"
                    f"<td>{verdict}</td></tr>")
    if not rows:
        return ""
    device = manifest.get("device")
    budget = (f"<p>Budget: <b>{_e(device['name'])}</b> ({_e(device.get('description'))}): RAM "
              f"{device['ram_kb']:g} KiB, flash {device['flash_kb']:g} KiB; TFLite Micro counted as "
              f"{device['runtime_flash_kb']:g} KiB of flash and {device['runtime_ram_kb']:g} KiB of RAM. RAM needed = "
              "the arena (measured in TFLite Micro where it ran, else the estimate) + one input and one output "
              "buffer + the interpreter.</p>" if device else "")
    return ("<h2>Device fit</h2>" + budget + "<table id='device-fit'><tr><th>artifact</th><th>flash</th>"
            "<th>RAM: activation arena (greedy plan, batch 1)</th><th>LiteRT's arena</th>"
            "<th>TFLite Micro: measured arena (smallest that allocates)</th>"
            f"<th>TFLite Micro kernels</th><th>device budget</th></tr>{''.join(rows)}</table>"
            "<p class='reason'>Kernels' scratch buffers come on top of the arena on a microcontroller.</p>")


def _package_section(manifest: dict[str, Any]) -> str:
    records = manifest.get("package") or {}
    if not records:
        return ""
    rows = "".join(f"<tr><td>{_e(layout)}</td><td>{_e(r.get('artifact'))}</td><td>{_e(r.get('path'))}</td>"
                   f"<td>{_e(_layout_detail(r))}</td><td><span class='status {_e(r.get('status'))}'>"
                   f"{_e(str(r.get('status')).upper())}</span></td></tr>" for layout, r in records.items())
    return ("<h2>Serving layouts and firmware</h2><table id='package'><tr><th>layout</th><th>artifact</th>"
            f"<th>path</th><th>version / firmware</th><th>status</th></tr>{rows}</table>")


def _layout_detail(record: dict[str, Any]) -> str:
    """A serving layout's version; a firmware's arena, op count and how its array was read back."""
    firmware = record.get("firmware")
    if not firmware:
        return str(record.get("version"))
    return (f"arena {firmware['arena']['allocate_bytes']} B, {len(firmware['ops'])} ops, "
            f"{record.get('read_back')}")


def _versions(manifest: dict[str, Any]) -> str:
    versions = manifest.get("versions") or {}
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in versions.items())
    return f"<table id='versions'><tr><th>package</th><th>version</th></tr>{rows}</table>"
