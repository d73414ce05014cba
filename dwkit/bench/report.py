"""A benchmark result as files: the JSON itself, a markdown table and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dwkit.cli.common import write_atomic

MODE_COLOURS = {"sequential": "#4c72b0", "chunked": "#dd8452"}


def write_reports(result: dict[str, Any], out_dir: Path, stem: str) -> dict[str, str]:
    """Write <stem>.json, <stem>.md and <stem>.png into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    files = {
        "json": out_dir / f"{stem}.json",
        "markdown": out_dir / f"{stem}.md",
        "chart": out_dir / f"{stem}.png",
    }
    paths = {k: str(v) for k, v in files.items()}
    write_atomic(files["markdown"], markdown(result) + "\n")
    chart_error = write_chart(result, files["chart"])
    if chart_error:
        paths.pop("chart")
        result["chart_error"] = chart_error
    write_atomic(files["json"], json.dumps({**result, "files": paths}, indent=1) + "\n")
    return paths


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _system_name(row: dict[str, Any]) -> str:
    if row["system"] == "dwkit":
        return f"dwkit {row['label']}"
    if row["system"] == "transformers-pipeline":
        return "transformers pipeline fp32"
    return row["label"]


def header(result: dict[str, Any]) -> list[str]:
    model, audio, machine = result["model"], result["audio"], result["machine"]
    weights = "seeded random weights" if model["synthetic"] else "trained weights"
    forced = (
        f", exactly {model['tokens_per_window']} decoded tokens per window (end-of-text suppressed)"
        if model.get("tokens_per_window")
        else ""
    )
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    features = ", ".join(machine.get("cpu_features") or []) or "-"
    repeat = result["config"]["repeat"]
    warmup = " after a warm-up on the first 10 s" if result["config"].get("warmup", True) else ", no warm-up"
    if result["config"].get("interleave") and repeat > 1:
        warmup += ", interleaved round-robin across the systems of each mode"
    return [
        f"**{Path(str(model['source'])).name}** ({weights}), {_fmt(audio['total_seconds'])} s of audio "
        f"({len(audio['files'])} file(s), {audio['source']}){forced}; {result['threads']} threads, "
        f"{repeat} repeat(s){warmup}.",
        "",
        f"Machine: {device_text(machine)}; CPU {machine['cpu']} ({features}), {machine['usable_cores']} usable cores, "
        f"{_fmt(machine['ram_gb'])} GB RAM, load average {machine['loadavg'][0] if machine['loadavg'] else '-'} "
        f"before / {result['machine']['loadavg_after'][0]} after; {versions}. "
        "Workers run with OMP_WAIT_POLICY=PASSIVE, one process per system and mode.",
    ]


def device_text(machine: dict[str, Any]) -> str:
    """Where the systems ran: the CPU, or the GPU by name (nvidia-smi) with its memory and driver."""
    device = machine.get("device") or "cpu"
    gpu = machine.get("gpu")
    if not gpu:
        return f"device {device}"
    memory = f", {_fmt(gpu['memory_gb'])} GB" if gpu.get("memory_gb") else ""
    driver = f", driver {gpu['driver']}" if gpu.get("driver") else ""
    return f"device {device} = {gpu['name']}{memory}{driver}"


def table(result: dict[str, Any]) -> list[str]:
    on_gpu = bool(result["machine"].get("gpu"))
    gpu_column = " GPU MB held |" if on_gpu else ""
    lines = [
        "| system | mode | RTFx | vs hf fp32 | p50 s | p95 s | encoder ms / 30 s window | decoder ms / token "
        f"| load s | peak RSS MB |{gpu_column} size MB | WER vs hf fp32 | CPU use |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if on_gpu else ""),
    ]
    for row in result["results"]:
        name = _system_name(row)
        if "error" in row:
            message = row["error"].replace("|", "/")
            outcome = message[:200] if row.get("skipped") else f"failed: {message[:160]}"
            lines.append(f"| {name} | {row['mode']} | {outcome} |" + " |" * (10 + on_gpu))  # empty figures
            continue
        ratios = row.get("vs_baseline") or {}
        speedup = ratios.get("speedup")
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    row["mode"],
                    _fmt(row.get("rtfx"), 2),
                    f"{speedup:.2f}x" if speedup is not None else "-",
                    _fmt(row.get("latency_p50_s"), 2),
                    _fmt(row.get("latency_p95_s"), 2),
                    _fmt(row.get("encoder_ms_per_window"), 0),
                    _fmt(row.get("decoder_ms_per_token"), 1),
                    _fmt(row.get("load_s"), 2),
                    _fmt(row.get("peak_rss_mb"), 0),
                    *([_fmt(row.get("gpu_held_mb"), 0)] if on_gpu else []),
                    _fmt(row.get("size_mb"), 0),
                    _fmt(row.get("wer_vs_baseline"), 3),
                    f"{row['cpu_utilisation']:.0%}" if row.get("cpu_utilisation") is not None else "-",
                ]
            )
            + " |"
        )
    return lines


def draft_lines(result: dict[str, Any]) -> list[str]:
    """Speculative decoding rows: acceptance, and speed against the same backend without the draft."""
    lines = []
    for row in result["results"]:
        draft = row.get("draft")
        if not draft:
            continue
        speedup = draft.get("speedup_vs_without")
        same = {True: "identical", False: "DIFFERENT", None: "-"}[draft.get("same_text_as_without")]
        lines.append(
            f"- {_system_name(row)} ({row['mode']}): draft acceptance {draft['acceptance_rate']:.1%} "
            f"({draft['accepted']}/{draft['proposed']} proposed tokens), {draft['tokens_per_main_step']:.2f} "
            f"tokens per main-model step; {f'{speedup:.2f}x' if speedup is not None else '-'} the RTFx "
            f"without the draft; transcripts {same} to it"
        )
    return ["Speculative decoding:", *lines] if lines else []


def floor_lines(result: dict[str, Any]) -> list[str]:
    floor = result.get("floor")
    if not floor:
        return []
    if "error" in floor:
        return [f"Matmul floor: failed ({floor['error']})."]
    twice = " (best of a measurement before and after the runs)" if floor.get("measurements") else ""
    where = (
        f"on {floor.get('device_name') or floor['device']}"
        if str(floor.get("device", "cpu")).startswith("cuda")
        else f"{floor['threads']} threads"
    )
    dtypes = [d for d in ("fp32", "bf16", "fp16") if floor.get(f"{d}_gflops")]
    rates = ", ".join(f"{d} {_fmt(floor[f'{d}_gflops'], 0)} GFLOP/s" for d in dtypes)
    by_rate = sorted(dtypes, key=("bf16", "fp32", "fp16").index)  # bf16 first: the floor goals use
    times = ", ".join(f"{_fmt(floor[f'encoder_floor_ms_{d}'], 0)} ms at the {d} rate" for d in by_rate)
    return [
        f"Matmul floor ({floor['size']}^3, {where}{twice}): {rates}. One 30 s window through this encoder is "
        f"{_fmt(floor['encoder_gflop_per_window'], 0)} GFLOP: {times}."
    ]


def goal_lines(result: dict[str, Any]) -> list[str]:
    """The run against its config's goal; nothing when the config states none."""
    goal = result.get("goal")
    if not goal:
        return []
    title, criteria = f"Goal ({goal['name']})", goal["criteria"]
    if "fastest" not in goal:
        return [f"{title}: no dwkit backend completed; nothing to compare."]
    fastest = goal["fastest"]
    verdict = {True: "met", False: "NOT met", None: "not judged (a measurement is missing)"}[goal.get("met")]
    lines = [f"{title}: {goal['statement']}. Status on this run: **{verdict}**."]
    if not goal.get("architecture_matches"):
        lines.append(
            f"(This model is not the {criteria['architecture_name'] or 'goal'} architecture: indicative only.)"
        )
    if criteria["speedup_min"] is not None:
        least = f"goal >= {criteria['speedup_min']:g}x"
        if "speedup_vs_reference" not in goal:
            lines.append(
                f"- speed: {criteria['reference']} did not run here (peers run where installed), so no ratio."
            )
        elif goal["speedup_gap"] > 1:
            ref = goal["reference"]
            lines.append(
                f"- speed: fastest dwkit backend {fastest['label']} ({fastest['mode']}) RTFx {_fmt(fastest['rtfx'], 2)} "
                f"vs {ref['label']} ({ref['mode']}) RTFx {_fmt(ref['rtfx'], 2)} = {goal['speedup_vs_reference']:.2f}x "
                f"({least}; {goal['speedup_gap']:.2f}x still to gain)"
            )
        else:
            lines.append(
                f"- speed: {fastest['label']} ({fastest['mode']}) is {goal['speedup_vs_reference']:.2f}x "
                f"{goal['reference']['label']} ({least}: met)"
            )
    if "encoder_vs_bf16_floor" in goal:
        best = goal["best_encoder"]
        lines.append(
            f"- encoder: {fastest['label']} takes {_fmt(fastest['encoder_ms_per_window'], 0)} ms per window = "
            f"{goal['encoder_vs_bf16_floor']:.2f}x the bf16 floor (goal <= {criteria['encoder_vs_bf16_floor_max']:g}x); "
            f"the fastest encoder here is {best['label']} ({best['mode']}) at "
            f"{_fmt(best['encoder_ms_per_window'], 0)} ms = {best['vs_bf16_floor']:.2f}x"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    parts = header(result) + [""] + table(result) + [""]
    drafted = draft_lines(result)
    parts += drafted + [""] if drafted else []
    parts += floor_lines(result)
    goal = goal_lines(result)
    parts += [""] + goal if goal else []
    parts += [
        "",
        "RTFx = total audio seconds / total transcription seconds; vs hf fp32 = RTFx / RTFx of dwkit's "
        "transformers fp32 backend in the same mode; decoder ms/token = time in generate / tokens generated; "
        "CPU use = the worker's CPU seconds / (wall seconds x threads) while transcribing: well under 100% "
        "means it waited for cores other processes held (or left threads idle).",
    ]
    if result.get("command"):
        parts += ["", f"Command: `{result['command']}`"]
    return "\n".join(parts)


def write_chart(result: dict[str, Any], path: Path) -> str | None:
    """RTFx per system and mode, and encoder ms per window against the bf16 floor (Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: pip install 'dwkit[bench]'"
    rows = [r for r in result["results"] if "error" not in r and r.get("rtfx")]
    if not rows:
        return "no successful rows to chart"
    names = list(dict.fromkeys(_system_name(r) for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    height = 0.8 / len(modes)
    fig, (speed, encoder) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.42 * len(names)), sharey=True)
    for m, mode in enumerate(modes):
        for panel, key in ((speed, "rtfx"), (encoder, "encoder_ms_per_window")):
            ys, values = [], []
            for i, name in enumerate(names):
                found = [r for r in rows if _system_name(r) == name and r["mode"] == mode and r.get(key)]
                if found:
                    ys.append(i + (m - (len(modes) - 1) / 2) * height)
                    values.append(found[0][key])
            if values:
                bars = panel.barh(ys, values, height=height, color=MODE_COLOURS.get(mode, "#888"), label=mode)
                panel.bar_label(bars, fmt="%.1f" if key == "rtfx" else "%.0f", fontsize=7, padding=2)
    speed.set_yticks(range(len(names)), names, fontsize=8)
    speed.invert_yaxis()
    speed.set_xlabel("RTFx (audio s / transcription s, higher is faster)")
    speed.legend(fontsize=8, loc="lower right")
    encoder.set_xlabel("encoder ms per 30 s window (lower is faster)")
    floor = result.get("floor") or {}
    if floor.get("encoder_floor_ms_bf16"):
        encoder.axvline(floor["encoder_floor_ms_bf16"], color="black", linestyle="--", linewidth=1)
        note = " bf16 floor (dashed)"
        most = ((result.get("goal") or {}).get("criteria") or {}).get("encoder_vs_bf16_floor_max")
        if most:  # the goal's bound
            encoder.axvline(most * floor["encoder_floor_ms_bf16"], color="grey", linestyle=":", linewidth=1)
            note += f", {most:g}x (dotted)"
        encoder.text(floor["encoder_floor_ms_bf16"], -0.6, note, fontsize=7, va="bottom")
    for panel in (speed, encoder):
        panel.grid(axis="x", alpha=0.3)
        panel.margins(x=0.15)
    model = result["model"]
    fig.suptitle(
        f"dwkit bench: {Path(str(model['source'])).name} ({'random' if model['synthetic'] else 'trained'} weights), "
        f"{_fmt(result['audio']['total_seconds'])} s audio, {result['threads']} threads, "
        f"{(result['machine'].get('gpu') or {}).get('name') or result['machine']['cpu']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return None
