"""Architectures in words, for people: a trial's note in the dashboard and the report's summaries."""

from __future__ import annotations

import optuna

from searchspace import format_macs, format_params
from trials import record


def architecture_note(trial: optuna.trial.FrozenTrial) -> str:
    """A Markdown note: what the network is, stage by stage, what it costs and how it scored."""
    spec = record.spec_of(trial)
    if spec is None:
        return f"## Trial {trial.number}\n\nNo architecture recorded."
    attrs = trial.user_attrs
    title = f"## Trial {trial.number}: {attrs.get(record.PRESET) or spec.id}"
    costs = f"{format_params(attrs[record.PARAMS])} params, {format_macs(attrs[record.MACS])} MACs at 224 (1000 classes)"
    if attrs.get(record.LATENCY_MS) is not None:
        costs += f", {attrs[record.LATENCY_MS]:.1f} ms at batch 1 ({attrs.get(record.LATENCY_SOURCE)}; the study's latency device)"
    lines = [title, "", costs, ""]
    if attrs.get(record.PROXY_TOP1) is not None:
        lines += [f"Proxy top-1 {attrs[record.PROXY_TOP1]:.1f}% after {attrs.get(record.EPOCHS)} epoch(s), state {trial.state.name}.", ""]
    reason = attrs.get(record.FAIL_REASON) or (record.INTERRUPTED if trial.state == optuna.trial.TrialState.FAIL else None)
    if reason:
        lines += [f"Note: {reason}", ""]
    net = f"stem {spec.stem}" + (f" (+{spec.stem_extra_convs} convs)" if spec.stem_extra_convs else "")
    net += f", downsampling {spec.downsample}, {spec.norm}, {spec.act}"
    if spec.layer_scale:
        net += f", layer scale {spec.layer_scale:g}"
    lines += [net, ""] + [f"- {line}" for line in spec.summary()]
    return "\n".join(lines)
