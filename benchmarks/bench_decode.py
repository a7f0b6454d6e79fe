"""Decode + preprocessing throughput of `AdaTADVideoProcessor` (frames per second of model input).

THUMOS setting: one sliding window = 768 frames read every 4 video frames (snippet stride 4, scale factor
1), i.e. 3072 consecutive video frames decoded per sample, resized (short side) and center-cropped to
160x160 (or 224x224), normalised to float32. The source is a real clip from `tests/data/videos` looped
by remuxing its packets (no re-encoding) until it is long enough, so every sample decodes real H.264 data
and no frame is served twice from a cache.

Each configuration runs `--samples` windows through a `torch.utils.data.DataLoader` with 1 or 2 worker
processes (`batch_size=1`) and reports model-input frames per second (768 per sample) after one warm-up
sample per worker.

    python benchmarks/bench_decode.py                      # decord and PyAV, 160 and 224, 1 and 2 workers
    python benchmarks/bench_decode.py --backends torchcodec --workers 1
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from adatad.processing_adatad import AdaTADVideoProcessor

REPO_ROOT = Path(__file__).resolve().parents[1]


def loop_clip(source: Path, target: Path, min_frames: int) -> int:
    """Remux `source`'s video packets back to back (shifted timestamps) until `min_frames`; returns frames."""
    with av.open(str(source)) as reader:
        stream = reader.streams.video[0]
        packets = [packet for packet in reader.demux(stream) if packet.size]
        num_frames = len(packets)
        span = max(packet.pts + (packet.duration or 0) for packet in packets) - min(packet.pts for packet in packets)
        with av.open(str(target), "w") as writer:
            out_stream = writer.add_stream_from_template(stream)
            loops = -(-min_frames // num_frames)
            for loop in range(loops):
                for packet in packets:
                    copy = av.Packet(bytes(packet))
                    copy.pts = packet.pts + loop * span
                    copy.dts = packet.dts + loop * span if packet.dts is not None else None
                    copy.duration, copy.time_base = packet.duration, packet.time_base
                    copy.is_keyframe = packet.is_keyframe
                    copy.stream = out_stream
                    writer.mux(copy)
    return loops * num_frames


class WindowDataset(torch.utils.data.Dataset):
    """`num_samples` THUMOS windows of one looped video, decoded and preprocessed on access."""

    def __init__(self, processor, video_path, num_samples, backend):
        self.processor, self.video_path, self.num_samples, self.backend = processor, video_path, num_samples, backend

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        processor = self.processor
        decoded = processor.decode(self.video_path, lambda info: processor.sample_frames(info.num_frames), self.backend)
        return processor.transform_frames(decoded.frames), decoded.info.backend


def run(processor, video_path, backend, num_workers, num_samples):
    dataset = WindowDataset(processor, video_path, num_samples + num_workers, backend)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=num_workers,
                                         collate_fn=lambda items: items[0])
    iterator = iter(loader)
    # warm-up: one sample per worker (process start, imports, first open)
    for _ in range(num_workers):
        next(iterator)
    start = time.perf_counter()
    frames, used_backend = 0, None
    for pixel_values, used_backend in iterator:
        frames += pixel_values.shape[0]
    elapsed = time.perf_counter() - start
    return frames / elapsed, used_backend, tuple(pixel_values.shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=REPO_ROOT / "tests" / "data" / "videos" / "demo.mp4")
    parser.add_argument("--backends", nargs="+", default=["decord", "pyav"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[160, 224])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--samples", type=int, default=4, help="timed windows per configuration")
    parser.add_argument("--decode-threads", type=int, default=4)
    args = parser.parse_args()

    window_size, snippet_stride = 768, 4
    results = []
    with tempfile.TemporaryDirectory() as folder:
        looped = Path(folder) / "looped.mp4"
        total = loop_clip(args.video, looped, window_size * snippet_stride)
        print(
            f"source {args.video.name} looped to {total} frames; {window_size} frames per sample, "
            f"stride {snippet_stride}"
        )
        for size in args.sizes:
            processor = AdaTADVideoProcessor(
                window_size=window_size, snippet_stride=snippet_stride, size={"shortest_edge": size},
                crop_size={"height": size, "width": size}, decode_num_threads=args.decode_threads,
            )
            for backend in args.backends:
                for num_workers in args.workers:
                    fps, used, shape = run(processor, looped, backend, num_workers, args.samples)
                    row = {"size": size, "backend": used, "workers": num_workers, "frames_per_s": round(fps, 1),
                           "sample_shape": list(shape)}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    print(f"torch threads {torch.get_num_threads()}, numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
