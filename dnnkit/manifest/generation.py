"""report.html's generation section and the terminal's generation lines: each step artifact's sequences as
Keras's, the task's exact match, decode speed and status, and sample generations (as text where the
vocabulary is known)."""

from __future__ import annotations

import html
from typing import Any


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def as_text(tokens: list[int], section: dict[str, Any]) -> str:
    """``tokens`` as the vocabulary's text (the end token shown as itself), or as ids without a vocabulary."""
    vocabulary = section.get("vocabulary")
    if not vocabulary:
        return " ".join(str(t) for t in tokens)
    return "".join(vocabulary[t] if 0 <= t < len(vocabulary) else f"<{t}>" for t in tokens)


def _fraction(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def generation_lines(section: dict[str, Any] | None) -> list[str]:
    """One line per step artifact: its sequences as Keras's, exact match, decode speed, status; its failures."""
    if not section:
        return []
    if "skipped" in section:
        return [f"generation: {section['skipped']}"]
    lines = [f"generation: {section['prompts']} held-out prompts decoded greedily through each step artifact "
             f"({section.get('cache', 'cache')}, {section['capacity']} positions); Keras's exact match "
             f"{_fraction(section['keras_exact_match'])}"]
    for name, e in section["artifacts"].items():
        if "same_as_keras" in e:
            lines.append(f"  {name}: {e['same_as_keras']:.4f} of sequences as Keras's, exact match "
                         f"{_fraction(e['exact_match'])}, {e['tokens_per_s']} tokens/s, {e['status'].upper()}")
        else:
            lines.append(f"  {name}: {e['status'].upper()}")
        lines += [f"  FAILED {name}: {f}" for f in (e.get("failures") or [])]
    return lines


def generation_html(manifest: dict[str, Any]) -> str:
    """The report's generation section (empty for a model that does not generate)."""
    section = manifest.get("generation")
    if not section:
        return ""
    if "skipped" in section:
        return f"<h2>Generation</h2><p id='generation'>{_e(section['skipped'])}</p>"
    rows = []
    for name, e in section["artifacts"].items():
        same = e.get("same_as_keras")
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(e.get('format'))}</td><td>{_e(e.get('precision'))}</td>"
                    f"<td>{'-' if same is None else f'{same:.4f}'}</td>"
                    f"<td>{'-' if e.get('exact_match') is None else format(e['exact_match'], '.4f')}</td>"
                    f"<td>{_e(e.get('tokens_per_s') or '-')}</td><td>{_e(e.get('path') or '-')}</td>"
                    f"<td class='status {_e(e['status'])}'>{_e(e['status'].upper())}</td></tr>")
    names = [n for n, e in section["artifacts"].items() if e.get("samples")]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    samples = []
    for i, sample in enumerate(section.get("sample") or []):
        cells = "".join(f"<td>{_e(as_text(section['artifacts'][n]['samples'][i]['generated'], section))}</td>"
                        for n in names if i < len(section["artifacts"][n]["samples"]))
        samples.append(f"<tr><td>{_e(as_text(sample['prompt'], section))}</td>"
                       f"<td>{_e(as_text(sample['keras'], section))}</td>{cells}</tr>")
    return (f"<h2>Generation</h2><p>{section['prompts']} held-out prompts decoded greedily through each step "
            f"artifact in its own runtime ({_e(section.get('cache', 'cache'))}, {section['capacity']} positions); "
            f"Keras's exact match on the task {_fraction(section['keras_exact_match'])}. An fp32 file must give every "
            "token Keras gives.</p>"
            "<table id='generation'><tr><th>artifact</th><th>format</th><th>precision</th><th>sequences as Keras's"
            "</th><th>exact match</th><th>tokens/s</th><th>file</th><th>status</th></tr>" + "".join(rows)
            + "</table><h3>Sample generations</h3><table id='generation-samples'><tr><th>prompt</th><th>Keras</th>"
            + head + "</tr>" + "".join(samples) + "</table>")
