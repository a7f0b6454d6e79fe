"""Peak memory and time of one AdaTAD training step per tuning mode, as the number of frames grows.

This is the paper's headline claim: training the Temporal-Informative Adapters of a frozen ViT needs far less
memory than fine-tuning the whole ViT, and AdaTAD-dagger (side adapters beside a ViT run without gradients) less
again.

Case: VideoMAE-S sized AdaTAD (`--backbone base`: VideoMAE-B, 768 wide, 12 heads) (THUMOS-14 preset: 384 wide,
12 layers, 6 heads, 16-frame chunks, 160x160 frames, 20 classes) with random weights;
`feature_length = max_seq_len = num_frames` as the THUMOS presets do. One training step = forward with synthetic
labels + backward + AdamW step (the model's own parameter groups), batch size 1.

Variants (one per tuning mode; "+ckpt" = `model.activation_checkpointing_enable()`, every ViT layer recomputed in
backward). Checkpointing only matters where autograd runs through the ViT (`adapter`, `full`); `frozen` and `side`
run the ViT without gradients, so they are measured once.
    adapter, adapter+ckpt   AdaTAD: TIA in every block trains, ViT weights frozen
    side                    AdaTAD-dagger: side adapters on the second half of the blocks
    frozen                  ViT frozen, no adapters: only the detector trains
    full, full+ckpt         everything trains

Every configuration runs in a FRESH subprocess: build the model and inputs, then 1 warm-up + N timed steps.
Memory = peak during the steps minus what the process held just before the first step (weights, inputs): so it
counts activations kept for backward, gradients, AdamW states and temporaries, not the weights. On CPU the peak is
`resource.getrusage(RUSAGE_SELF).ru_maxrss` (its high-water mark is reset through `/proc/self/clear_refs` right
before the first step), with glibc's mmap threshold fixed (`--malloc-mmap-threshold`, default 128 KiB) so that
every large tensor is returned to the system when freed and the RSS follows live tensors (glibc's adaptive default
keeps freed tensors below 32 MiB in a fragmented heap: the RSS then depends on tensor sizes, i.e. on the frame
count, and overstates small runs); on CUDA it is `torch.cuda.max_memory_allocated`. Time = median wall time of the
timed steps (forward, backward and optimizer parts are recorded too), with `os.getloadavg()` before and after every
step: on a shared machine the times are only as good as that load.

OOM guard: a configuration whose memory, extrapolated linearly from the same variant at smaller frame counts, would
exceed `--max-memory-gib` (or what the machine has available) is skipped with that reason; a running step whose
resident memory grows past the limit is killed and recorded as such.

Usage:
    python benchmarks/bench_train.py [--frames 64 128 256 512 768] [--modes adapter side frozen full]
        [--steps 2] [--warmup 1] [--checkpointing auto|off|on] [--autocast-bf16] [--attn-implementation sdpa]
        [--max-memory-gib 14] [--output-dir benchmarks/results] [--resume] [--quick] [--report-only]

Outputs in `--output-dir`: `bench_train.json` (every measurement, skips with their reasons), `bench_train.md` (the
tables) and `bench_train.png` (memory and step time against frames).
"""

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
MODES = ("adapter", "side", "frozen", "full")
# The THUMOS presets' ViTs (VideoMAE-S and -B); the rest of the configuration is AdaTADConfig's defaults.
BACKBONES = {
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
# Modes whose backward runs through the ViT: the only ones where activation checkpointing changes anything.
CHECKPOINTABLE_MODES = ("adapter", "full")
RESULTS_NAME = "bench_train"
KILL_POLL_SECONDS = 0.2


# ---------------------------------------------------------------------------------------------
# Worker: one configuration, in its own process
# ---------------------------------------------------------------------------------------------


def resident_bytes() -> int:
    """Current resident set size of this process (from `/proc/self/statm`)."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """High-water mark of the resident set size (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_resident() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0: writing 5 to `/proc/self/clear_refs`). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def synthetic_labels(num_frames: int, feature_length: int, num_labels: int, torch) -> list[dict]:
    """A few ground-truth actions spread over the window, in feature-grid units (batch of one video)."""
    segments = [[0.05, 0.12], [0.2, 0.35], [0.5, 0.53], [0.7, 0.95]]
    segments = torch.tensor(segments) * feature_length
    return [{"segments": segments, "labels": torch.arange(len(segments)) % num_labels}]


def run_worker(spec: dict) -> dict:
    """Build the model of `spec`, run warm-up + timed training steps, return the measurements."""
    import torch

    from adatad import AdaTADConfig, AdaTADForTemporalDetection

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    frames = spec["frames"]
    config = AdaTADConfig(
        tuning_mode=spec["mode"], num_frames=frames, feature_length=frames, max_seq_len=frames, image_size=160,
        backbone_config=BACKBONES[spec.get("backbone", "small")],
    )
    model = AdaTADForTemporalDetection(config)
    if spec["attn_implementation"] != "model":
        model.set_attn_implementation(spec["attn_implementation"])
    if spec["checkpointing"]:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.get_parameter_groups(detector_lr=1e-4, adapter_lr=2e-4, backbone_lr=1e-5))

    pixel_values = torch.randn(1, frames, 3, config.image_size, config.image_size, device=device)
    masks = torch.ones(1, config.feature_length, dtype=torch.bool, device=device)
    labels = [
        {key: value.to(device) for key, value in video.items()}
        for video in synthetic_labels(frames, config.feature_length, config.num_labels, torch)
    ]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    backbone_trainable = sum(
        p.numel() for n, p in model.named_parameters() if p.requires_grad and n.startswith("model.")
    )
    weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        peak_reset = reset_peak_resident()
        baseline = resident_bytes()
        peak_before = peak_resident_bytes()

    steps = []
    for step in range(spec["warmup"] + spec["steps"]):
        load_before = os.getloadavg()
        synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["autocast_bf16"]):
            output = model(pixel_values, masks=masks, labels=labels)
        synchronize()
        forward_done = time.perf_counter()
        output.loss.backward()
        synchronize()
        backward_done = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        end = time.perf_counter()
        loss = float(output.loss)
        del output
        steps.append(
            {
                "warmup": step < spec["warmup"],
                "seconds": end - start,
                "forward_seconds": forward_done - start,
                "backward_seconds": backward_done - forward_done,
                "optimizer_seconds": end - backward_done,
                "loss": loss,
                "loadavg_before": list(load_before),
                "loadavg_after": list(os.getloadavg()),
            }
        )

    # Trainable backbone parameters that got no gradient would mean the variant does not train what it claims
    # (e.g. a re-entrant checkpoint dropping the adapters' gradients); AdamW's state tells, as grads are freed.
    backbone_without_update = [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and name.startswith("model.") and parameter not in optimizer.state
    ]
    if device.type == "cuda":
        peak_bytes = torch.cuda.max_memory_allocated() - baseline
        memory_method = "torch.cuda.max_memory_allocated - memory_allocated before the first step"
    else:
        peak_bytes = peak_resident_bytes() - baseline
        memory_method = (
            "ru_maxrss (reset via /proc/self/clear_refs) - RSS before the first step"
            if peak_reset
            else f"ru_maxrss - RSS before the first step (peak could not be reset; {peak_before} bytes before)"
        )
    timed = [step["seconds"] for step in steps if not step["warmup"]] or [steps[-1]["seconds"]]
    return {
        "status": "ok",
        "peak_memory_bytes": peak_bytes,
        "peak_memory_gib": peak_bytes / GIB,
        "memory_method": memory_method,
        "baseline_bytes": baseline,
        "weights_bytes": weights_bytes,
        "step_seconds": statistics.median(timed),
        "steps": steps,
        "trainable_parameters": trainable,
        "trainable_backbone_parameters": backbone_trainable,
        "backbone_parameters_without_update": backbone_without_update[:5],
        # The model holds its own copy of the config: read the ViT's attention from there.
        "attn_implementation_used": model.config.backbone_config._attn_implementation,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------
# Parent: plan, guard, launch, collect
# ---------------------------------------------------------------------------------------------


def variant_name(mode: str, checkpointing: bool) -> str:
    return f"{mode}+ckpt" if checkpointing else mode


def plan_variants(modes: list[str], checkpointing: str) -> list[tuple[str, bool]]:
    """(mode, checkpointing) pairs; `auto` measures both settings only where checkpointing matters."""
    variants = []
    for mode in modes:
        if checkpointing == "on" and mode in CHECKPOINTABLE_MODES:
            variants.append((mode, True))
        elif checkpointing == "auto" and mode in CHECKPOINTABLE_MODES:
            variants += [(mode, False), (mode, True)]
        else:
            variants.append((mode, False))
    return variants


def predict_memory_gib(results: list[dict], variant: str, frames: int) -> tuple[float, str] | None:
    """Linear extrapolation (in frames) of a variant's measured memory, from its two largest smaller runs (or
    proportionally from one). None when nothing smaller was measured."""
    measured = sorted(
        (r["frames"], r["peak_memory_gib"])
        for r in results
        if r["variant"] == variant and r["status"] == "ok" and r["frames"] < frames
    )
    if not measured:
        return None
    if len(measured) == 1:
        (f0, m0), = measured
        return m0 * frames / f0, f"{m0:.2f} GiB at {f0} frames x {frames / f0:g}"
    (f0, m0), (f1, m1) = measured[-2:]
    slope = (m1 - m0) / (f1 - f0)
    return m1 + slope * (frames - f1), f"linear from {f0} ({m0:.2f} GiB) and {f1} ({m1:.2f} GiB) frames"


def available_memory_gib() -> float:
    with open("/proc/meminfo") as file:
        fields = dict(line.split(":", 1) for line in file)
    return int(fields["MemAvailable"].split()[0]) / 2**20


def run_configuration(spec: dict, limit_bytes: float, timeout_s: float) -> dict:
    """Run one configuration in a fresh interpreter; kill it if its RSS passes `limit_bytes` (CPU) or on timeout."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path), str(result_path)]
        environment = dict(os.environ)
        if spec["malloc_mmap_threshold"]:
            # A fixed threshold turns off glibc's adaptive one, so every large tensor is mmapped and unmapped when
            # freed: the RSS then follows live tensors instead of heap fragmentation that depends on tensor sizes.
            environment["MALLOC_MMAP_THRESHOLD_"] = str(spec["malloc_mmap_threshold"])
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stderr=subprocess.PIPE, text=True)
        start, killed = time.monotonic(), None
        page = os.sysconf("SC_PAGE_SIZE")
        while process.poll() is None:
            time.sleep(KILL_POLL_SECONDS)
            try:
                with open(f"/proc/{process.pid}/statm") as file:
                    rss = int(file.read().split()[1]) * page
            except OSError:
                continue
            if spec["device"] == "cpu" and rss > limit_bytes:
                killed = f"killed: resident memory {rss / GIB:.1f} GiB passed the limit of {limit_bytes / GIB:.1f} GiB"
            elif time.monotonic() - start > timeout_s:
                killed = f"killed: still running after the {timeout_s:.0f} s timeout"
            if killed:
                process.kill()
                break
        stderr = process.communicate()[1]
        if killed:
            return {"status": "failed", "reason": killed}
        if process.returncode != 0 or not result_path.exists():
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            return {"status": "failed", "reason": f"worker exited with code {process.returncode}: {tail}"}
        return json.loads(result_path.read_text())


def machine_info(device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        "python": platform.python_version(),
        "device": device,
    }
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    return info


def run_benchmark(args) -> dict:
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        info = machine_info(device) | {"gpu": torch.cuda.get_device_name(0)}
    else:
        info = machine_info(device)
    results_path = args.output_dir / f"{RESULTS_NAME}.json"
    results = []
    if args.resume and results_path.exists():
        results = [r for r in json.loads(results_path.read_text())["results"] if r["status"] == "ok"]
    settings = {
        "frames": args.frames,
        "modes": args.modes,
        "steps": args.steps,
        "warmup": args.warmup,
        "checkpointing": args.checkpointing,
        "autocast_bf16": args.autocast_bf16,
        "attn_implementation": args.attn_implementation,
        "max_memory_gib": args.max_memory_gib,
        "malloc_mmap_threshold": args.malloc_mmap_threshold,
        "image_size": 160,
        "batch_size": 1,
        "backbone": args.backbone,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    report = {"machine": info, "settings": settings, "results": results}
    started = time.monotonic()
    for frames in sorted(args.frames):
        for mode, checkpointing in plan_variants(args.modes, args.checkpointing):
            variant = variant_name(mode, checkpointing)
            if any(r["variant"] == variant and r["frames"] == frames and r["status"] == "ok" for r in results):
                continue
            entry = {"variant": variant, "mode": mode, "checkpointing": checkpointing, "frames": frames}
            limit_gib = min(args.max_memory_gib, available_memory_gib() - args.memory_margin_gib)
            prediction = predict_memory_gib(results, variant, frames)
            if prediction is not None:
                entry["predicted_memory_gib"], entry["prediction_basis"] = prediction
            elapsed_min = (time.monotonic() - started) / 60
            if args.time_budget_min and elapsed_min > args.time_budget_min:
                entry |= {"status": "skipped", "reason": f"time budget of {args.time_budget_min:g} min used up"}
            elif prediction is not None and prediction[0] > limit_gib:
                entry |= {
                    "status": "skipped",
                    "reason": f"predicted {prediction[0]:.1f} GiB ({prediction[1]}) > limit {limit_gib:.1f} GiB",
                }
            else:
                spec = {
                    "device": device,
                    "frames": frames,
                    "mode": mode,
                    "checkpointing": checkpointing,
                    "steps": args.steps,
                    "warmup": args.warmup,
                    "autocast_bf16": args.autocast_bf16,
                    "attn_implementation": args.attn_implementation,
                    "malloc_mmap_threshold": args.malloc_mmap_threshold if device == "cpu" else 0,
                    "backbone": args.backbone,
                }
                print(f"[{time.strftime('%H:%M:%S')}] {variant:13s} {frames:4d} frames ...", end=" ", flush=True)
                # The worker's own RSS includes the weights and the interpreter (~1 GiB) on top of the step.
                entry |= run_configuration(spec, (limit_gib + 1.5) * GIB, args.timeout_min * 60)
                entry["loadavg_at_end"] = list(os.getloadavg())
            if entry["status"] == "ok":
                print(f"{entry['peak_memory_gib']:.2f} GiB, {entry['step_seconds']:.1f} s/step", flush=True)
            else:
                print(f"{variant:13s} {frames:4d} frames: {entry['status']} ({entry['reason']})", flush=True)
            results.append(entry)
            write_outputs(report, args.output_dir)
    return report


# ---------------------------------------------------------------------------------------------
# Report: JSON, Markdown tables, plot
# ---------------------------------------------------------------------------------------------


def variant_order(results: list[dict]) -> list[str]:
    order = [variant_name(m, c) for m in MODES for c in (False, True)]
    present = {r["variant"] for r in results}
    return [v for v in order if v in present]


def lookup(results: list[dict], variant: str, frames: int) -> dict | None:
    return next((r for r in results if r["variant"] == variant and r["frames"] == frames), None)


def markdown_tables(report: dict) -> str:
    results = report["results"]
    frames_list = sorted({r["frames"] for r in results})
    variants = variant_order(results)
    header = "| variant | " + " | ".join(f"{f} frames" for f in frames_list) + " |"
    rule = "|---|" + "---:|" * len(frames_list)

    def table(title: str, cell) -> list[str]:
        rows = [f"**{title}**", "", header, rule]
        for variant in variants:
            cells = []
            for frames in frames_list:
                entry = lookup(results, variant, frames)
                cells.append(cell(entry, frames) if entry else "")
            rows.append(f"| {variant} | " + " | ".join(cells) + " |")
        return rows + [""]

    def memory_cell(entry, frames):
        if entry["status"] == "ok":
            return f"{entry['peak_memory_gib']:.2f}"
        if "predicted_memory_gib" in entry:
            return f"skipped (~{entry['predicted_memory_gib']:.1f} predicted)"
        return entry["status"]

    def time_cell(entry, frames):
        return f"{entry['step_seconds']:.1f}" if entry["status"] == "ok" else "-"

    def ratio_cell(reference_variant):
        def cell(entry, frames):
            reference = lookup(results, reference_variant, frames)
            if not reference:
                return ""
            ref_value, ref_mark = memory_value(reference)
            value, mark = memory_value(entry)
            if ref_value is None or value is None:
                return "-"
            mark = "~" if (mark or ref_mark) else ""
            return f"{mark}{value / ref_value:.2f}x"

        return cell

    def load_cell(entry, frames):
        if entry["status"] != "ok":
            return "-"
        loads = [s["loadavg_before"][0] for s in entry["steps"]] + [s["loadavg_after"][0] for s in entry["steps"]]
        return f"{min(loads):.1f}-{max(loads):.1f}"

    lines = table("Peak training-step memory, GiB (above the weights)", memory_cell)
    lines += table("Step time, seconds (median of the timed steps)", time_cell)
    if any(r["variant"] == "full+ckpt" for r in results):
        lines += table("Memory relative to full fine-tuning with checkpointing (full+ckpt)", ratio_cell("full+ckpt"))
    if any(r["variant"] == "full" for r in results):
        lines += table("Memory relative to full fine-tuning without checkpointing (full)", ratio_cell("full"))
    lines += table("1-minute load average during the steps (min-max)", load_cell)
    lines.append("`~` = uses a predicted (extrapolated, not measured) memory value; `skipped (~X predicted)` = not run "
                 "because the predicted memory passed the limit.")
    return "\n".join(lines) + "\n"


def memory_value(entry: dict) -> tuple[float | None, bool]:
    """(memory GiB, True if predicted rather than measured)."""
    if entry["status"] == "ok":
        return entry["peak_memory_gib"], False
    return entry.get("predicted_memory_gib"), True


STYLE = {
    # variant: (colour, line style, marker)
    "adapter": ("tab:blue", "-", "o"),
    "adapter+ckpt": ("tab:blue", "--", "s"),
    "side": ("tab:green", "-", "^"),
    "frozen": ("tab:gray", "-", "v"),
    "full": ("tab:red", "-", "o"),
    "full+ckpt": ("tab:red", "--", "s"),
}
LABELS = {
    "adapter": "adapter (AdaTAD)",
    "adapter+ckpt": "adapter + checkpointing",
    "side": "side (AdaTAD\u2020)",
    "frozen": "frozen backbone",
    "full": "full fine-tuning",
    "full+ckpt": "full + checkpointing",
}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    settings = report["settings"]
    figure, (memory_axis, time_axis) = plt.subplots(1, 2, figsize=(13, 5.6))
    for variant in variant_order(results):
        color, linestyle, marker = STYLE.get(variant, ("black", "-", "o"))
        label = LABELS.get(variant, variant)
        entries = sorted((r for r in results if r["variant"] == variant), key=lambda r: r["frames"])
        ok = [r for r in entries if r["status"] == "ok"]
        if ok:
            frames = [r["frames"] for r in ok]
            memory_axis.plot(frames, [r["peak_memory_gib"] for r in ok], linestyle=linestyle, marker=marker,
                             color=color, label=label)
            time_axis.plot(frames, [r["step_seconds"] for r in ok], linestyle=linestyle, marker=marker, color=color,
                           label=label)
        predicted = [r for r in entries if r["status"] != "ok" and "predicted_memory_gib" in r]
        if ok and predicted:
            xs = [ok[-1]["frames"]] + [r["frames"] for r in predicted]
            ys = [ok[-1]["peak_memory_gib"]] + [r["predicted_memory_gib"] for r in predicted]
            memory_axis.plot(xs, ys, linestyle=":", color=color, alpha=0.7)
            memory_axis.scatter(xs[1:], ys[1:], marker="x", s=60, color=color, zorder=3,
                                label=f"{label}: predicted, not run")
    memory_axis.axhline(settings["max_memory_gib"], color="black", linewidth=0.8, linestyle="-.",
                        label=f"run limit ({settings['max_memory_gib']:g} GiB)")
    memory_axis.set(xlabel="frames per sample (160x160)", ylabel="peak step memory above the weights (GiB)",
                    title="Training-step memory")
    time_axis.set(xlabel="frames per sample (160x160)", ylabel="seconds per training step",
                  title="Training-step time (shared machine: see the load in the JSON)")
    frames_ticks = sorted({r["frames"] for r in results})
    for axis in (memory_axis, time_axis):
        axis.set_xticks(frames_ticks)
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
        axis.set_xlim(left=0)
    memory_axis.legend(fontsize=8, loc="upper left")
    time_axis.legend(fontsize=8, loc="upper left")
    summary = headline(report, short=True)
    if summary:
        figure.text(0.5, 0.01, summary, ha="center", va="bottom", fontsize=9,
                    bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="gray"))
    machine = report["machine"]
    where = machine.get("gpu") or f"{machine.get('cpu_model') or machine['processor']}, {machine['cpu_count']} cores"
    precision = "bf16 autocast" if settings["autocast_bf16"] else "fp32"
    figure.suptitle(f"AdaTAD VideoMAE-S training step, batch 1, {precision}, random weights; {machine['device']} "
                    f"({where})", fontsize=10)
    figure.tight_layout(rect=(0, 0.09 if summary else 0, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(report: dict, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{RESULTS_NAME}.json").write_text(json.dumps(report, indent=1) + "\n")
    (output_dir / f"{RESULTS_NAME}.md").write_text(markdown_tables(report))
    plot(report, output_dir / f"{RESULTS_NAME}.png")


def headline(report: dict, short: bool = False) -> str:
    """Memory of each variant relative to full fine-tuning (with and without checkpointing) at the largest frame
    count; `short` gives one line per reference (for the plot)."""
    results = report["results"]
    if not results:
        return ""
    frames = max(r["frames"] for r in results)
    lines, any_predicted = [], False
    for reference in ("full+ckpt", "full"):
        ref = lookup(results, reference, frames)
        if not ref or memory_value(ref)[0] is None:
            continue
        ref_value, ref_predicted = memory_value(ref)
        parts = []
        for variant in ("adapter", "adapter+ckpt", "side", "frozen"):
            entry = lookup(results, variant, frames)
            # The plot compares like with like: checkpointed full fine-tuning against variants that keep no ViT
            # activations (or checkpoint them), plain full fine-tuning against all.
            if (
                not entry
                or memory_value(entry)[0] is None
                or (short and (variant, reference) == ("adapter", "full+ckpt"))
            ):
                continue
            value, predicted = memory_value(entry)
            mark = "~" if predicted or ref_predicted else ""
            any_predicted |= bool(mark)
            parts.append((variant, f"{mark}{value / ref_value:.2f}x"))
        if short:
            listed = ", ".join(f"{variant} {ratio}" for variant, ratio in parts)
            lines.append(f"memory at {frames} frames relative to {LABELS[reference]}: {listed}")
        else:
            lines += [f"  {variant:13s} / {reference:9s} = {ratio}" for variant, ratio in parts]
    if not lines:
        return ""
    if any_predicted:
        lines.append("(~ = uses a predicted memory value: that configuration was not run)")
    return "\n".join(lines if short else [f"At {frames} frames:"] + lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 128, 256, 512, 768])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (their memory counts)")
    parser.add_argument("--checkpointing", choices=("auto", "off", "on"), default="auto",
                        help="auto: adapter and full with and without it, side and frozen without")
    parser.add_argument("--autocast-bf16", action="store_true", help="bf16 autocast (default fp32)")
    parser.add_argument("--attn-implementation", choices=("model", "sdpa", "eager"), default="model",
                        help="ViT attention; 'model' leaves the model as it is built")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--backbone", choices=tuple(BACKBONES), default="small", help="ViT size (VideoMAE-S or -B)")
    parser.add_argument("--max-memory-gib", type=float, default=14.0)
    parser.add_argument("--malloc-mmap-threshold", type=int, default=131072,
                        help="CPU: MALLOC_MMAP_THRESHOLD_ of the worker in bytes (0 = glibc's adaptive default)")
    parser.add_argument("--memory-margin-gib", type=float, default=2.0,
                        help="keep this much of the machine's available memory free")
    parser.add_argument("--timeout-min", type=float, default=40.0, help="per configuration")
    parser.add_argument("--time-budget-min", type=float, default=None, help="start no configuration after this")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--resume", action="store_true", help="keep measured results in the output JSON")
    parser.add_argument("--quick", action="store_true", help="64 and 128 frames, 1 timed step")
    parser.add_argument("--report-only", action="store_true", help="rewrite table and plot from the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.steps = [64, 128], 1
    return args


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(REPO_ROOT))
        spec = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps(run_worker(spec)))
        return
    args = parse_args()
    if args.report_only:
        report = json.loads((args.output_dir / f"{RESULTS_NAME}.json").read_text())
        write_outputs(report, args.output_dir)
    else:
        report = run_benchmark(args)
    print(markdown_tables(report))
    print(headline(report))


if __name__ == "__main__":
    main()
