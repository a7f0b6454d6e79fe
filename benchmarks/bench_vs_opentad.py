#!/usr/bin/env python
"""OpenTAD's AdaTAD vs adatad on the same model, same input, same machine, in one run.

Both models are built from one OpenTAD model dict (`opentad_ref.model_cfg`): OpenTAD builds it with its
own `build_detector`, adatad with `adatad.opentad.config_from_opentad`, so the architectures match.
Each measurement runs in a fresh subprocess (clean peak-RSS high-water mark), and the two
implementations alternate inside every round, so machine noise hits both alike. Medians over rounds.

Modes:
  infer  - detector forward (backbone + projection + neck + head), eval mode, no grad: frames/s
  adatad - one training step (forward + backward + AdamW step), adapters on every block, ViT body
           frozen, activation checkpointing on (OpenTAD's with_cp=True), drop path 0.1
  fullft - the same step with everything trainable (OpenTAD's VisionTransformerCP)
Memory = peak RSS increase during the step (peak minus RSS just before it), in MB. Step time is recorded as wall
time and as the worker's CPU time (user + system, all threads), which a loaded machine distorts less. Workers run
with glibc's mmap threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_), so that large tensors are returned to the system
when freed and the peak follows live tensors rather than heap fragmentation (closer to what a GPU's
allocator reports); --default-malloc measures with glibc's adaptive threshold instead.

OpenTAD's side needs an extracted OpenTAD checkout (--opentad-root, commit 3dd7b032d7a074bec9665001e4e7f9d1b71405b5)
and a Python environment with its dependencies (--opentad-python); docs/performance.md says how to build both.
The adatad worker imports adatad from --project (default: this checkout).

Usage:
  python benchmarks/bench_vs_opentad.py --opentad-root OPENTAD --opentad-python OPENTAD_VENV/bin/python \
      [--adatad-python PYTHON] [--frames 64] [--size 160] [--rounds 3] [--modes infer,adatad,fullft] [--out result.json]
"""
import argparse
import contextlib
import copy
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def rss_now_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# The measured case (the defaults of the command line): VideoMAE-S at 160x160, ActionFormer 512 wide, 20 classes.
HARNESS_DEFAULTS = dict(frames=64, size=160, embed=384, depth=12, heads=6)


def build_adatad(case: dict, full_finetuning: bool = False):
    """adatad's model for `case` (keys of HARNESS_DEFAULTS), built from the same OpenTAD model dict as OpenTAD's.

    Returns (model, pixel_values, masks, labels) for a batch of one video."""
    import torch

    from adatad import AdaTADForTemporalDetection
    from adatad.opentad import config_from_opentad
    from opentad_ref import model_cfg

    cfg = model_cfg(
        argparse.Namespace(**case), "VisionTransformerCP" if full_finetuning else "VisionTransformerAdapter"
    )
    torch.manual_seed(0)
    model = AdaTADForTemporalDetection(config_from_opentad(cfg, image_size=case["size"]))
    T, S = case["frames"], case["size"]
    pixel_values = torch.randn(1, T, 3, S, S)
    masks = torch.ones(1, T, dtype=torch.bool)
    labels = [{"segments": torch.tensor([[4.0, 20.0], [30.0, 50.0]]), "labels": torch.tensor([1, 7])}]
    return model, pixel_values, masks, labels


def build(args):
    """(model, call_infer, call_train_loss, prepare_train) for the implementation named by args.impl."""
    import torch

    case = {name: getattr(args, name) for name in HARNESS_DEFAULTS}
    if args.impl == "opentad":
        from mmengine.config import ConfigDict

        from opentad_ref import model_cfg, setup_opentad

        backbone_type = "VisionTransformerCP" if args.worker == "fullft" else "VisionTransformerAdapter"
        cfg = model_cfg(args, backbone_type)
        B, T, S = 1, args.frames, args.size
        masks = torch.ones(B, T, dtype=torch.bool)
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            build_detector, _ = setup_opentad()
            model = build_detector(ConfigDict(copy.deepcopy(cfg)))
        video = torch.randint(0, 256, (B, 1, 3, T, S, S)).float()
        metas = [dict(video_name="v0")]
        gt = dict(gt_segments=[torch.tensor([[4.0, 20.0], [30.0, 50.0]])], gt_labels=[torch.tensor([1, 7])])

        def infer():
            model.forward_test(video, masks, metas)

        def train_loss():
            return model(video, masks, metas, return_loss=True, **gt)["cost"]

        def prepare_train():
            model.backbone.model.backbone._freeze_layers()  # what OpenTAD's forward does anyway
    else:
        model, pixel_values, masks, labels = build_adatad(case, full_finetuning=args.worker == "fullft")

        def infer():
            model(pixel_values, masks=masks)

        def train_loss():
            return model(pixel_values, masks=masks, labels=labels).loss

        def prepare_train():
            model.activation_checkpointing_enable()
    return model, infer, train_loss, prepare_train


def worker(args):
    import torch

    torch.set_num_threads(args.threads)
    model, infer, train_loss, prepare_train = build(args)
    res = dict(impl=args.impl, mode=args.worker, params_total=sum(p.numel() for p in model.parameters()))
    if args.worker == "infer":
        model.eval()
        times = []
        with torch.no_grad():
            for it in range(args.warmup + args.repeats):
                t0 = time.perf_counter()
                infer()
                if it >= args.warmup:
                    times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        res.update(seconds_per_video=med, frames_per_s=args.frames / med, peak_rss_mb=peak_rss_mb())
        return res
    model.train()
    prepare_train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    res["params_trainable"] = sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.05)
    rss_before = rss_now_mb()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0, cpu0 = time.perf_counter(), time.process_time()
    loss = train_loss()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    res.update(step_seconds=time.perf_counter() - t0, step_cpu_seconds=time.process_time() - cpu0,
               step_system_cpu_seconds=usage.ru_stime - usage0.ru_stime,
               step_page_faults=usage.ru_minflt - usage0.ru_minflt,
               peak_rss_increase_during_step_mb=peak_rss_mb() - rss_before, loss=float(loss.detach()))
    return res


def run_worker(python, impl, mode, args):
    cmd = [python, str(Path(__file__).resolve()), "--worker", mode, "--impl", impl]
    for name in ("frames", "size", "threads", "repeats", "warmup", "embed", "depth", "heads"):
        cmd += [f"--{name}", str(getattr(args, name))]
    cwd = args.project if impl == "adatad" else str(HERE)
    env = dict(os.environ, OPENTAD_ROOT=args.opentad_root)
    if impl == "adatad":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.project, env.get("PYTHONPATH")]))
    if not args.default_malloc:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


def summarize(rows, modes):
    s = {}
    for m in modes:
        for impl in ("opentad", "adatad"):
            rs = rows[(impl, m)]
            if m == "infer":
                s[f"{m}.{impl}.frames_per_s"] = statistics.median(r["frames_per_s"] for r in rs)
            else:
                s[f"{m}.{impl}.mem_mb"] = statistics.median(r["peak_rss_increase_during_step_mb"] for r in rs)
                s[f"{m}.{impl}.step_s"] = statistics.median(r["step_seconds"] for r in rs)
                s[f"{m}.{impl}.step_cpu_s"] = statistics.median(r["step_cpu_seconds"] for r in rs)
    if "infer" in modes:
        s["ratio.infer_speed_adatad_over_opentad"] = s["infer.adatad.frames_per_s"] / s["infer.opentad.frames_per_s"]
    for m in ("adatad", "fullft"):
        if m in modes:
            s[f"ratio.{m}_mem_adatad_over_opentad"] = s[f"{m}.adatad.mem_mb"] / s[f"{m}.opentad.mem_mb"]
            s[f"ratio.{m}_step_time_adatad_over_opentad"] = s[f"{m}.adatad.step_s"] / s[f"{m}.opentad.step_s"]
            s[f"ratio.{m}_step_cpu_time_adatad_over_opentad"] = (
                s[f"{m}.adatad.step_cpu_s"] / s[f"{m}.opentad.step_cpu_s"]
            )
    if "adatad" in modes and "fullft" in modes:
        for impl in ("opentad", "adatad"):
            s[f"ratio.{impl}_adapter_over_fullft_mem"] = s[f"adatad.{impl}.mem_mb"] / s[f"fullft.{impl}.mem_mb"]
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--opentad-python", help="python of an environment that imports OpenTAD's dependencies")
    ap.add_argument("--opentad-root", default=os.environ.get("OPENTAD_ROOT"), help="extracted OpenTAD checkout")
    ap.add_argument(
        "--adatad-python", default=sys.executable, help="python of an environment with adatad's dependencies"
    )
    ap.add_argument("--project", default=str(HERE.parent), help="adatad checkout the adatad worker imports")
    ap.add_argument("--frames", type=int, default=64, help="frames per video (multiple of 16)")
    ap.add_argument("--size", type=int, default=160, help="frame height = width")
    ap.add_argument("--embed", type=int, default=384, help="ViT width (384 = VideoMAE-S)")
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads in each worker")
    ap.add_argument("--warmup", type=int, default=1, help="untimed inference calls")
    ap.add_argument("--repeats", type=int, default=3, help="timed inference calls (median)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median over rounds)")
    ap.add_argument("--modes", default="infer,adatad,fullft")
    ap.add_argument("--default-malloc", action="store_true",
                    help="measure with glibc's adaptive mmap threshold (heap fragmentation included)")
    ap.add_argument("--out", help="write the JSON result here too")
    ap.add_argument("--worker", choices=["infer", "adatad", "fullft"], help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=["opentad", "adatad"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("BENCH_JSON " + json.dumps(worker(args)))
        return
    if not (args.opentad_python and args.opentad_root):
        ap.error("--opentad-python and --opentad-root (or OPENTAD_ROOT) are required")
    modes = args.modes.split(",")
    rows = {(impl, m): [] for impl in ("opentad", "adatad") for m in modes}
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in range(args.rounds):
        order = ("opentad", "adatad") if r % 2 == 0 else ("adatad", "opentad")
        for m in modes:
            for impl in order:
                res = run_worker(args.opentad_python if impl == "opentad" else args.adatad_python, impl, m, args)
                rows[(impl, m)].append(res)
                figure = (f"{res['frames_per_s']:.1f} frames/s" if m == "infer" else
                          f"+{res['peak_rss_increase_during_step_mb']:.0f} MB, {res['step_seconds']:.2f} s "
                          f"({res['step_cpu_seconds']:.2f} s CPU)")
                print(f"round {r}  {m:6s}  {impl:7s}  {figure}", flush=True)
    summary = summarize(rows, modes)
    result = dict(config={k: getattr(args, k) for k in ("frames", "size", "embed", "depth", "heads", "threads",
                                                        "rounds", "repeats", "default_malloc")},
                  machine=dict(cpus=os.cpu_count(), platform=platform.platform(), started=started,
                               loadavg_before=load_before, loadavg_after=os.getloadavg()),
                  summary=summary, raw={f"{i}.{m}": v for (i, m), v in rows.items()})
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
