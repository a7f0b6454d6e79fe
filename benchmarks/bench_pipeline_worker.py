"""One measurement of AdaTAD's video data pipeline, OpenTAD's or adatad's, in this fresh process.

Started by `benchmarks/bench_pipeline.py` (which alternates the two implementations in fresh processes); run alone:

    python benchmarks/bench_pipeline_worker.py --impl adatad --case test --video clip.mp4 --work-dir out --out r.json

Everything runs on one thread (OpenMP/MKL 1, torch 1 thread, OpenCV 1 thread, decord 1 thread) and the figure is the
CPU time of the timed part (wall time is recorded too). OpenTAD's side builds its dataset from the preset's OpenTAD
config (its `pipeline` of mmaction2 transforms) and normalises with mmaction2's `ActionDataPreprocessor`, which OpenTAD
runs inside the model (on the GPU in training); `normalize_cpu_s` is that part alone. adatad's side reads the project
through its public API: the preset's `AdaTADVideoProcessor`, `TemporalDetectionTransform` rows and
`collate_temporal_detection` (the training/evaluation loaders) and `AdaTADVideoProcessor.preprocess` (all windows of a
video in one decoder pass, the inference path).

Cases:
    decode      the processor's decoder (`decode_backend`) on the frame indices of each test window (each window
                opened and read on its own); OpenTAD's is decord
    test        evaluation, one window row at a time, batches of 2 (a test loader)
    test_all    adatad: all windows of the video from one decoder pass (`processor.preprocess`)
    train       training samples: random truncation, random resized crop, flip, ImgAug("default"), colour jitter
    check       adatad/OpenTAD: window indices and masks, uint8 frames of window 1 and its model input, saved for
                the driver to compare
    `test_uint8`, `test_all_uint8` and `train_uint8` are adatad's cases with uint8 frames out of the loader
    (normalised later on the model's device), compared with OpenTAD without its normalisation.
"""

import argparse
import inspect
import json
import os
import sys
import time
import types

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

PRESET = "e2e_thumos_videomae_s_768x1_160_adapter"
OPENTAD_CONFIG = "configs/adatad/thumos/e2e_thumos_videomae_s_768x1_160_adapter.py"
# Ground truth of the benchmark video (seconds), used by random truncation.
SEGMENTS = [[10.0, 25.0], [40.0, 48.5], [70.0, 95.0], [118.0, 131.0], [150.0, 171.0]]
LABELS = ["ClassA", "ClassB", "ClassA", "ClassB", "ClassA"]
CLASS_NAMES = ["ClassA", "ClassB"]
BATCH_SIZE = 2  # the preset's per-GPU batch and OpenTAD's test batch size
UNSUPPORTED = 3  # exit status of a case that this adatad does not have (the driver skips it from then on)
CASES = ("decode", "test", "test_all", "train", "check", "test_uint8", "test_all_uint8", "train_uint8")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, choices=["opentad", "adatad"])
    parser.add_argument("--case", required=True, choices=CASES)
    parser.add_argument("--video", required=True, help="the benchmark video (bench_pipeline.py makes it)")
    parser.add_argument("--work-dir", required=True, help="folder for OpenTAD's annotation files and check arrays")
    parser.add_argument("--samples", type=int, default=8, help="training samples per run")
    parser.add_argument("--opentad-root", default=os.environ.get("OPENTAD_ROOT"), help="OpenTAD checkout")
    parser.add_argument("--project", default=None, help="adatad checkout to import (default: as installed)")
    parser.add_argument("--profile", default=None, help="write cProfile stats of the timed part to this file")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def video_info(path: str) -> tuple[int, float, float]:
    """(frames, fps, duration) as decord reports them (what both pipelines sample from)."""
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    num_frames, fps = len(reader), float(reader.get_avg_fps())
    return num_frames, fps, num_frames / fps


def timed(work, profile_path=None) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds) of `work()`, under cProfile when `profile_path` is given."""
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = work()
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler:
        profiler.dump_stats(profile_path)
    return result, wall, cpu


# ----------------------------------------------------------------------------------------------------------------------
# OpenTAD: its dataset classes with the config's pipelines (mmaction2 transforms), its collate function, and mmaction2's
# ActionDataPreprocessor for the mean/std normalisation that OpenTAD runs inside the model.
# ----------------------------------------------------------------------------------------------------------------------


def import_opentad(root: str):
    # Empty stand-ins for modules AdaTAD never uses: mmaction2's DRN localizer (missing from the 1.2.0 wheel) and two
    # CUDA-only ROI extensions of other OpenTAD detectors.
    drn_package = types.ModuleType("mmaction.models.localizers.drn")
    drn_package.__path__ = []
    drn_module = types.ModuleType("mmaction.models.localizers.drn.drn")
    drn_module.DRN = type("DRN", (), {})
    sys.modules.setdefault("mmaction.models.localizers.drn", drn_package)
    sys.modules.setdefault("mmaction.models.localizers.drn.drn", drn_module)
    for name in ("Align1D", "boundary_max_pooling_cuda"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, root)
    import mmaction.datasets  # noqa: F401  (registers the mmaction2 transforms)
    import opentad.datasets  # noqa: F401  (registers OpenTAD's datasets and transforms)


class OpenTAD:
    def __init__(self, args, with_imgaug: bool):
        if with_imgaug:
            np.bool = bool  # mmaction2's ImgAug sets this itself on numpy >= 1.24
        import cv2

        cv2.setNumThreads(1)
        import_opentad(args.opentad_root)
        from mmaction.models.data_preprocessors import ActionDataPreprocessor
        from mmengine.config import Config
        from opentad.datasets import build_dataset
        from opentad.datasets.builder import collate

        self.args, self.build_dataset, self.collate = args, build_dataset, collate
        self.config = Config.fromfile(os.path.join(args.opentad_root, OPENTAD_CONFIG))
        num_frames, _, duration = video_info(args.video)
        self.video_id = os.path.splitext(os.path.basename(args.video))[0]
        for subset in ("validation", "training"):
            annotations = [{"segment": segment, "label": label} for segment, label in zip(SEGMENTS, LABELS)]
            database = {self.video_id: {"subset": subset, "duration": duration, "frame": num_frames,
                                        "annotations": annotations}}
            with open(os.path.join(args.work_dir, f"opentad_{subset}.json"), "w") as handle:
                json.dump({"database": database}, handle)
        with open(os.path.join(args.work_dir, "opentad_classes.txt"), "w") as handle:
            handle.write("\n".join(CLASS_NAMES) + "\n")
        settings = self.config.model.backbone.data_preprocessor
        self.preprocessor = ActionDataPreprocessor(
            mean=settings.mean, std=settings.std, format_shape=settings.format_shape
        )

    def dataset(self, split: str, drop=(), stop_after=None):
        config = self.config.dataset[split].copy()
        subset = "training" if split == "train" else "validation"
        config.ann_file = os.path.join(self.args.work_dir, f"opentad_{subset}.json")
        config.class_map = os.path.join(self.args.work_dir, "opentad_classes.txt")
        config.data_path = os.path.dirname(self.args.video)
        pipeline = []
        for step in config.pipeline:
            step = dict(step)
            if step["type"] in drop:
                continue
            if step["type"] == "mmaction.DecordInit":
                step["num_threads"] = 1
            pipeline.append(step)
            if step["type"] == stop_after:
                break
        config.pipeline = pipeline
        return self.build_dataset(config, default_args=dict(logger=None))

    def normalize(self, batch):
        # What OpenTAD's backbone wrapper does before the ViT: mean/std per frame on the stacked uint8 batch.
        frames, _ = self.preprocessor.preprocess(list(batch["inputs"]), data_samples=None, training=False)
        return frames


def run_opentad(args) -> dict:
    import random

    result = {}
    opentad = OpenTAD(args, with_imgaug=args.case == "train")
    if args.case == "decode":
        dataset = opentad.dataset("test", stop_after="mmaction.DecordDecode")
        counts, wall, cpu = timed(lambda: [len(dataset[i]["imgs"]) for i in range(len(dataset))], args.profile)
        return dict(windows=len(counts), frames=int(sum(counts)), wall_s=wall, cpu_s=cpu)
    if args.case == "check":
        test = opentad.dataset("test")
        decode = opentad.dataset("test", stop_after="mmaction.DecordDecode")
        windows = []
        for index in range(len(decode)):
            row = decode[index]
            windows.append({"frame_indices": row["frame_inds"].tolist(), "mask": row["masks"].int().tolist()})
        np.save(os.path.join(args.work_dir, "opentad_window1_uint8.npy"), np.stack(decode[1]["imgs"]))
        pixel_values = opentad.normalize(opentad.collate([test[1]]))  # (1, 1, 3, T, H, W)
        model_input = pixel_values[0, 0].permute(1, 0, 2, 3).numpy()  # (T, 3, H, W)
        np.save(os.path.join(args.work_dir, "opentad_window1_input.npy"), model_input)
        return dict(windows=windows)
    if args.case == "test":
        dataset, count = opentad.dataset("test"), None
        count = len(dataset)
        batches = [list(range(start, min(count, start + BATCH_SIZE))) for start in range(0, count, BATCH_SIZE)]
    else:  # train
        random.seed(0)
        np.random.seed(0)
        import imgaug

        imgaug.seed(0)
        result["imgaug"] = imgaug.__version__
        dataset = opentad.dataset("train")
        samples = args.samples
        batches = [[0] * len(range(start, min(samples, start + BATCH_SIZE))) for start in range(0, samples, BATCH_SIZE)]
        count = samples
    normalize_cpu = [0.0]

    def work():
        shapes = []
        for batch_indices in batches:
            batch = opentad.collate([dataset[index] for index in batch_indices])
            start = time.process_time()
            shapes.append(list(opentad.normalize(batch).shape))
            normalize_cpu[0] += time.process_time() - start
        return shapes

    shapes, wall, cpu = timed(work, args.profile)
    result.update(rows=count, batch_shape=shapes[0], frames=count * 768, wall_s=wall, cpu_s=cpu,
                  normalize_cpu_s=normalize_cpu[0])
    return result


# ----------------------------------------------------------------------------------------------------------------------
# adatad: the preset's processor, TemporalDetectionTransform rows (the training and evaluation loaders) and
# processor.preprocess (the inference path).
# ----------------------------------------------------------------------------------------------------------------------


def unsupported(what: str):
    print(f"this adatad has no {what}", file=sys.stderr)
    sys.exit(UNSUPPORTED)


class Adatad:
    def __init__(self, args, augmentation="preset"):
        root = args.project or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.path.insert(0, root)
        sys.path.insert(0, os.path.join(root, "training"))
        import datasets
        from adatad.presets import load_preset, processor_kwargs

        try:
            from adatad.annotations import annotation_features, expand_sliding_windows
        except ImportError:  # a checkout from before the annotation module had its name
            from adatad.data import annotation_features, expand_sliding_windows
        from adatad.processing_adatad import AdaTADVideoProcessor

        try:
            from adatad.dataset_transforms import TemporalDetectionTransform, collate_temporal_detection
            from adatad.video_decoding import decode_video
        except ImportError:  # a checkout from before the decoding backends and the loaders' glue had their modules
            from adatad.processing_adatad import TemporalDetectionTransform, collate_temporal_detection, decode_video

        self.args = args
        self.preset = load_preset(PRESET)
        kwargs = processor_kwargs(self.preset)
        # The preset's decoder choice (`decode_backend`), as a user gets it, on one thread.
        kwargs.update(decode_num_threads=1)
        if augmentation != "preset":
            kwargs["augmentation"] = augmentation
        self.processor = AdaTADVideoProcessor(**kwargs)
        self.transform_class, self.collate, self.decode_video = (
            TemporalDetectionTransform, collate_temporal_detection, decode_video
        )
        num_frames, fps, duration = video_info(args.video)
        row = {
            "video_id": os.path.splitext(os.path.basename(args.video))[0], "video_path": args.video,
            "duration": duration, "fps": fps, "num_frames": num_frames, "segments": SEGMENTS, "subset": "validation",
            "labels": [CLASS_NAMES.index(label) for label in LABELS],
        }
        self.video_rows = datasets.Dataset.from_list([row], features=annotation_features(CLASS_NAMES))
        data = self.preset["data"]
        self.window_rows = expand_sliding_windows(
            self.video_rows, window_size=self.processor.window_size, snippet_stride=self.processor.snippet_stride,
            mode=data["conversion_mode"], fps=data["fps"], overlap=data["window_overlap"],
            offset_frames=data["offset_frames"], test_mode=True,
        )

    def transform(self, uint8: bool, **kwargs):
        if uint8:
            if "return_uint8" not in inspect.signature(self.transform_class).parameters:
                unsupported("TemporalDetectionTransform(return_uint8=...)")
            kwargs["return_uint8"] = True
        return self.transform_class(self.processor, grid_conversion="frame_count", **kwargs)


def run_adatad(args) -> dict:
    uint8 = args.case.endswith("_uint8")
    case = args.case.removesuffix("_uint8")
    adatad = Adatad(args)
    processor = adatad.processor
    result = {"processor": {key: getattr(processor, key) for key in (
        "window_size", "window_overlap", "scale_factor", "snippet_stride", "decode_backend", "decode_num_threads",
        "augmentation", "do_color_jitter", "do_flip")}}
    if case == "decode":
        num_frames = video_info(args.video)[0]

        def work():
            counts = []
            for start in processor.window_start_frames(num_frames):
                def select(info, start=start):
                    return processor.sample_frames(info.num_frames, window_start_frame=start)

                decoded = adatad.decode_video(args.video, select, backend=processor.decode_backend, num_threads=1)
                counts.append(decoded.frames.shape[0])
            return counts

        counts, wall, cpu = timed(work, args.profile)
        result.update(windows=len(counts), frames=int(sum(counts)), wall_s=wall, cpu_s=cpu)
    elif case == "check":
        num_frames = video_info(args.video)[0]
        samples = [processor.sample_frames(num_frames, window_start_frame=start)
                   for start in processor.window_start_frames(num_frames)]
        result["windows"] = [{"frame_indices": np.asarray(sample.frame_indices).tolist(),
                              "mask": np.asarray(sample.mask).astype(int).tolist()} for sample in samples]
        decoded = adatad.decode_video(args.video, lambda info: samples[1], backend=processor.decode_backend,
                                      num_threads=1)
        np.save(os.path.join(args.work_dir, "adatad_window1_uint8.npy"), decoded.frames.permute(0, 2, 3, 1).numpy())
        rows = adatad.window_rows.with_transform(adatad.transform(False, mode="eval"))
        row_input = rows[1]["pixel_values"]
        one_pass_input = processor.preprocess(args.video)["pixel_values"][1]
        np.save(os.path.join(args.work_dir, "adatad_window1_input.npy"), row_input.numpy())
        result["row_vs_one_pass_max_abs_diff"] = float((row_input - one_pass_input).abs().max())
    elif case == "test":
        rows = adatad.window_rows.with_transform(adatad.transform(uint8, mode="eval"))
        count = len(rows)

        def work():
            return [list(adatad.collate([rows[i] for i in range(start, min(count, start + BATCH_SIZE))])
                         ["pixel_values"].shape) for start in range(0, count, BATCH_SIZE)]

        shapes, wall, cpu = timed(work, args.profile)
        result.update(rows=count, batch_shape=shapes[0], frames=count * 768, wall_s=wall, cpu_s=cpu)
    elif case == "test_all":
        kwargs = {}
        if uint8:
            if "return_uint8" not in inspect.signature(processor.preprocess).parameters:
                unsupported("preprocess(return_uint8=...)")
            kwargs["return_uint8"] = True
        output, wall, cpu = timed(lambda: processor.preprocess(args.video, **kwargs), args.profile)
        count = output["pixel_values"].shape[0]
        result.update(rows=count, batch_shape=list(output["pixel_values"].shape), frames=count * 768, wall_s=wall,
                      cpu_s=cpu, dtype=str(output["pixel_values"].dtype))
    else:  # train
        transform = adatad.transform(uint8, mode="train", seed=0)
        rows = adatad.video_rows.with_transform(transform)

        def work():
            shapes = []
            for start in range(0, args.samples, BATCH_SIZE):
                items = []
                for index in range(start, min(args.samples, start + BATCH_SIZE)):
                    transform.set_epoch(index)  # a fresh draw per sample, the same sequence in every round
                    items.append(rows[0])
                shapes.append(list(adatad.collate(items)["pixel_values"].shape))
            return shapes

        shapes, wall, cpu = timed(work, args.profile)
        result.update(rows=args.samples, batch_shape=shapes[0], frames=args.samples * 768, wall_s=wall, cpu_s=cpu)
    return result


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    if args.impl == "opentad" and args.case not in ("decode", "test", "train", "check"):
        raise SystemExit(f"OpenTAD has no case {args.case!r}")
    result = run_opentad(args) if args.impl == "opentad" else run_adatad(args)
    result.update(impl=args.impl, case=args.case, python=sys.version.split()[0], torch=torch.__version__,
                  numpy=np.__version__, threads=torch.get_num_threads())
    if "frames" in result:
        result.update(frames_per_s_wall=result["frames"] / result["wall_s"],
                      frames_per_s_cpu=result["frames"] / result["cpu_s"])
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
