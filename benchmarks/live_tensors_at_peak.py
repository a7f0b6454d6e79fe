"""Which tensors are alive at the memory peak of one adatad training step, grouped by the operator and module that
made them.

The model is the one `bench_vs_opentad.py` measures (VideoMAE-S sized, 160x160, ActionFormer 512 wide, 20 classes,
random weights, activation checkpointing on), built at `--frames`. Every tensor storage of 1 MiB or more that an
operator creates during the step (forward, backward, AdamW step) is counted until it is freed; at the largest total
the live storages are printed, grouped by phase, module (the innermost module running; reliable in the forward
only: a recomputation that checkpointing stops early leaves its module named in what follows), operator and
leading shape. Parameters are left out; the input frames, made before
the step, show up when first reshaped. Slow: every operator goes through a Python dispatch mode.

Usage:
    python benchmarks/live_tensors_at_peak.py [--frames 256] [--fullft] [--rows 30]
"""

import argparse
import collections
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_opentad import HARNESS_DEFAULTS, build_adatad  # noqa: E402

MIN_BYTES = 2**20


class LiveTensors(TorchDispatchMode):
    """Tracks the storages operators create, and the set alive at the largest total."""

    def __init__(self, skip_storages: set[int], module_stack: list[str]):
        super().__init__()
        self.skip_storages = skip_storages
        self.module_stack = module_stack
        self.live: dict[int, tuple[int, str]] = {}
        self.total = self.peak = 0
        self.at_peak: list[tuple[int, str]] = []
        self.phase = "forward"

    def _release(self, key: int) -> None:
        size, _ = self.live.pop(key)
        self.total -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(output)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self.live or key in self.skip_storages or storage.nbytes() < MIN_BYTES:
                continue
            where = self.module_stack[-1] if self.module_stack else "-"
            label = f"{self.phase} {where} {func.__name__} {tuple(tensor.shape)[:2]}"
            self.live[key] = (storage.nbytes(), label)
            self.total += storage.nbytes()
            weakref.finalize(storage, self._release, key)
            if self.total > self.peak:
                self.peak, self.at_peak = self.total, list(self.live.values())
        return output


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--fullft", action="store_true", help="full fine-tuning instead of AdaTAD's adapters")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, pixel_values, masks, labels = build_adatad(
        dict(HARNESS_DEFAULTS, frames=args.frames), full_finetuning=args.fullft
    )
    model.train()
    model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    module_stack: list[str] = []

    def leave(module, inputs, output, name):
        if module_stack[-1:] == [name]:
            module_stack.pop()

    for name, module in model.named_modules():
        module.register_forward_pre_hook(lambda module, inputs, name=name: module_stack.append(name))
        module.register_forward_hook(lambda module, inputs, output, name=name: leave(module, inputs, output, name))
    tracker = LiveTensors({p.untyped_storage().data_ptr() for p in model.parameters()}, module_stack)
    with tracker:
        loss = model(pixel_values, masks=masks, labels=labels).loss
        tracker.phase = "backward"
        loss.backward()
        tracker.phase = "optimizer"
        optimizer.step()
    groups, counts = collections.Counter(), collections.Counter()
    for size, label in tracker.at_peak:
        groups[label] += size
        counts[label] += 1
    print(f"{args.frames} frames: {tracker.peak / 2**20:.0f} MiB in storages of 1 MiB or more at the peak")
    for label, size in groups.most_common(args.rows):
        print(f"{size / 2**20:8.1f} MiB  x{counts[label]:3d}  {label}")


if __name__ == "__main__":
    main()
