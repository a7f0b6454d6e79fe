"""`temporal-action-detection` pipeline: video files in, action segments in seconds out.

```python
>>> from adatad import load_detection_pipeline  # `import adatad` registers the task with transformers
>>> detector = load_detection_pipeline("path/to/adatad-model")
>>> detector("video.mp4", threshold=0.3)
[{"label": "CliffDiving", "score": 0.91, "segment": [12.4, 15.83]}, ...]
```

`load_detection_pipeline` checks the folder and builds the pipeline from the installed classes. Every folder the
project writes (training runs, the converters, `save_pretrained` of the model, the processor or this pipeline)
carries the task in its `config.json` (`custom_pipelines`) and this file beside the model code, so
`pipeline(model=folder, trust_remote_code=True)` works there without `adatad` installed.

How a call runs (three stages that overlap):

1. a background thread opens each video, plans its evaluation windows (`sliding_window`: every window covering
   the video; `resize`: one row per video), decodes groups of windows (frames shared by overlapping windows are
   decoded once), applies the processor's evaluation transforms and packs windows of one or several videos into
   batches of `batch_size`; it runs ahead of the model by `prefetch_batches` batches;
2. the calling thread runs the model on each batch and decodes each window's candidates to seconds (no NMS yet);
3. once every window of a video is through the model, one worker thread merges them (OpenTAD's sliding-window
   merge: one soft-NMS over all windows), filters by `threshold` and formats the result, while the model goes on
   with the next batch.

Results come back in input order. A video that cannot be decoded raises `VideoDecodeError` (naming the file and
the decoder's reason) with `on_error="raise"` (the default); with `on_error="skip"` the other videos go on, the
skipped video's result is an empty list, a warning names it, and `skipped_videos` lists it after the call.
`detect(...)` yields one `VideoDetections` per video with the error attached instead, which is what the
`adatad-detect` command line uses.

`stream(fps=...)` returns a `DetectionStream` for frames that arrive over time (near-online): `push(frames)` runs
every window whose frames are in and returns the detections no later frame can change, `finish()` the rest.
"""

from __future__ import annotations

import importlib
import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

# Importing the model module also registers the model with AutoModel, so that model folders load with the installed
# classes, not with their own code.
from .modeling_adatad import PIPELINE_TASK
from .post_processing import (
    PostProcessingSettings,
    NonFiniteDetectorOutputError,
    check_finite_candidates,
    check_threshold_and_top_k,
    decode_candidates,
    keep_best_detections,
)
# Importing the processor module registers it with AutoVideoProcessor, as the model module registers the model.
from .processing_adatad import AdaTADVideoProcessor  # noqa: F401
from .video_decoding import VideoDecodeError

logger = logging.get_logger(__name__)

TASK = PIPELINE_TASK
ON_ERROR_CHOICES = ("raise", "skip")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_THRESHOLD = 0.3
# Decoded batches waiting for the model: enough to hide decoding jitter, small enough to bound memory
# (a THUMOS window of 768 frames at 160x160 is about 240 MB in float32).
DEFAULT_PREFETCH_BATCHES = 2
_END_OF_STREAM = object()


class ModelProcessorMismatchError(ValueError):
    """The model and the video processor of a pipeline disagree on frames, size or classes."""


@dataclass
class VideoDetections:
    """Detections of one input video, as `TemporalActionDetectionPipeline.detect` yields them.

    Attributes:
        video: the path given.
        video_id: the file stem (used as key in ActivityNet-style JSON).
        detections: `[{"label", "score", "segment": [start_s, end_s]}]`, by descending score.
        duration: seconds of the decodable video (0 when it could not be opened).
        num_windows: model inputs the video was split into.
        error: why the video was skipped (`on_error="skip"`): a `VideoDecodeError`, or a
            `NonFiniteDetectorOutputError` naming the window whose detector outputs were NaN or infinite; else None.
    """

    video: str
    video_id: str
    detections: list[dict] = field(default_factory=list)
    duration: float = 0.0
    num_windows: int = 0
    error: VideoDecodeError | NonFiniteDetectorOutputError | None = None


@dataclass
class _VideoJob:
    """Book-keeping of one input video while its windows travel through the stages."""

    index: int
    path: str
    video_id: str
    num_frames: int = 0
    fps: float = 0.0
    window_starts: list[int] | None = None
    window_results: list[dict] = field(default_factory=list)
    error: VideoDecodeError | NonFiniteDetectorOutputError | None = None

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0

    @property
    def key(self) -> str:
        # Unique per input entry, so that the same file given twice is still two videos for post-processing.
        return f"{self.index}:{self.video_id}"


def is_decode_error(error: BaseException) -> bool:
    """Whether `error` is the processor's `VideoDecodeError` (also its copy in a trust_remote_code folder)."""
    # A folder loaded with trust_remote_code gives the processor its own copy of `VideoDecodeError`.
    return isinstance(error, VideoDecodeError) or type(error).__name__ == "VideoDecodeError"


class TemporalActionDetectionPipeline(Pipeline):
    """Temporal action detection on whole videos with an AdaTAD model and its `AdaTADVideoProcessor`.

    Call it with a video path (returns one list of detections) or a list of paths (returns one list per video):
    `{"label": str, "score": float, "segment": [start_seconds, end_seconds]}`, sorted by descending score, with
    every segment inside `[0, duration]` of its video.

    Call arguments (also accepted by `pipeline(...)` as defaults):
        threshold (`float` in [0, 1], defaults to 0.3): keep detections with `score >= threshold` (after NMS). The
            default is for viewing; pass 0 to keep the whole ranked list for mAP evaluation.
        top_k (`int`, defaults to None): keep at most this many detections per video (the best ones).
        batch_size (`int`, defaults to 1): windows per model call; windows of different videos share batches.
        on_error (`"raise"` or `"skip"`, defaults to `"raise"`): what an undecodable video does (see module doc).
        precision (`"fp32"`, `"bf16"` or `"fp16"`, defaults to `"fp32"`): autocast dtype of the model call.
        prefetch_batches (`int`, defaults to 2): decoded batches kept ready ahead of the model (0: decode in the
            calling thread, no overlap).

    Raises at construction `ModelProcessorMismatchError` when the processor's frames per input, feature length,
    crop size or class names do not fit the model's config.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.video_processor is None:
            raise ModelProcessorMismatchError(
                "the temporal-action-detection pipeline needs the model's AdaTADVideoProcessor: save it beside the "
                "model (`processor.save_pretrained(folder)` writes video_preprocessor_config.json) or pass "
                "`video_processor=`."
            )
        self.model.eval()
        self.class_names = self._class_names()
        self._check_model_matches_processor()
        self.skipped_videos: list[dict] = []

    # -- construction checks ---------------------------------------------------------------------------------

    def _class_names(self) -> list[str]:
        config, processor = self.model.config, self.video_processor
        if processor.class_names is not None:
            if len(processor.class_names) != config.num_labels:
                raise ModelProcessorMismatchError(
                    f"the video processor names {len(processor.class_names)} classes but the model predicts "
                    f"{config.num_labels} (`num_labels`); fix `class_names` in video_preprocessor_config.json."
                )
            return list(processor.class_names)
        return [config.id2label[i] for i in range(config.num_labels)]

    def _check_model_matches_processor(self):
        config, processor = self.model.config, self.video_processor
        problems = []
        if processor.frames_per_sample() != config.num_frames:
            length_name = "resize_length" if processor.sampling_method == "resize" else "window_size"
            problems.append(
                f"the processor gives {processor.frames_per_sample()} frames per input ({length_name} "
                f"{processor.feature_length()} x scale_factor {processor.scale_factor}) but the model takes "
                f"`num_frames` = {config.num_frames}"
            )
        if processor.feature_length() != config.feature_length:
            problems.append(
                f"the processor's masks have {processor.feature_length()} feature steps "
                f"({processor.sampling_method}) but the model's `feature_length` is {config.feature_length}"
            )
        crop = processor.crop_size
        if not processor.do_center_crop or (crop.height, crop.width) != (config.image_size, config.image_size):
            cropped = f"{crop.height}x{crop.width}" if processor.do_center_crop else "uncropped"
            problems.append(
                f"the processor produces {cropped} frames but the model's `image_size` is "
                f"{config.image_size}x{config.image_size} (set `crop_size` and `do_center_crop=True`)"
            )
        if problems:
            raise ModelProcessorMismatchError(
                "model and video processor disagree: " + "; ".join(problems) + ". Save the processor that was "
                "trained or converted with this model into its folder."
            )

    # -- transformers Pipeline API --------------------------------------------------------------------------

    def _sanitize_parameters(
        self, threshold=None, top_k=None, on_error=None, precision=None, prefetch_batches=None, **kwargs
    ):
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)} for the {TASK} pipeline")
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if threshold is not None:
            check_threshold_and_top_k(threshold, top_k)
            postprocess_params["threshold"] = float(threshold)
        if top_k is not None:
            check_threshold_and_top_k(0.0, top_k)
            postprocess_params["top_k"] = int(top_k)
        if on_error is not None:
            if on_error not in ON_ERROR_CHOICES:
                raise ValueError(f"`on_error` must be one of {ON_ERROR_CHOICES}, got {on_error!r}.")
            preprocess_params["on_error"] = on_error
        if prefetch_batches is not None:
            if int(prefetch_batches) < 0:
                raise ValueError(f"`prefetch_batches` must be >= 0, got {prefetch_batches}.")
            preprocess_params["prefetch_batches"] = int(prefetch_batches)
        if precision is not None:
            if precision not in PRECISIONS:
                raise ValueError(f"`precision` must be one of {sorted(PRECISIONS)}, got {precision!r}.")
            forward_params["precision"] = precision
        return preprocess_params, forward_params, postprocess_params

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Model, video processor, their code and this pipeline's code, with the task in `config.json`, so
        that `pipeline(model=save_directory, trust_remote_code=True)` rebuilds this pipeline anywhere."""
        super().save_pretrained(save_directory, **kwargs)
        self.video_processor.save_pretrained(save_directory)

    def preprocess(self, job: _VideoJob, first_window: int, num_windows: int) -> list[dict]:
        """Decode and transform windows `first_window .. first_window + num_windows - 1` of one video.

        The first call opens the video and plans its windows (`job.window_starts`, `num_frames`, `fps`). One
        decoder pass serves the whole group, so frames shared by overlapping windows are decoded once.

        Returns:
            one dict per window: `pixel_values` `(num_frames, 3, H, W)` (float32, uint8 on an accelerator),
            `masks` bool `(feature_length,)`,
            `video_meta` (for post-processing) and the `job`.
        """
        processor = self.video_processor

        def select_samples(info):
            if job.window_starts is None:
                job.num_frames, job.fps = info.num_frames, info.fps
                if not info.fps > 0:
                    raise VideoDecodeError(job.path, f"the decoder ({info.backend}) reports no frame rate, so "
                                           "segments cannot be placed in seconds")
                job.window_starts = processor.window_start_frames(info.num_frames)
            starts = job.window_starts[first_window : first_window + num_windows]
            return [processor.sample_frames(info.num_frames, window_start_frame=start) for start in starts]

        # On an accelerator the frames travel as uint8 (a quarter of the bytes) and `_forward` normalises them there.
        _, decoded_windows = processor.decode_windows(
            job.path, select_samples, return_uint8=self.device.type != "cpu"
        )
        return [
            {
                "pixel_values": pixel_values,
                "masks": torch.from_numpy(sample.mask),
                "video_meta": processor.video_meta(job.key, job.fps, job.duration, sample.window_start_frame),
                "job": job,
            }
            for sample, pixel_values in decoded_windows
        ]

    def _forward(self, model_inputs: dict, precision: str = "fp32"):
        pixel_values = model_inputs["pixel_values"]
        if pixel_values.dtype == torch.uint8:
            pixel_values = self.video_processor.normalize_pixel_values(pixel_values)
        pixel_values = pixel_values.to(self.model.dtype)
        autocast_dtype = PRECISIONS[precision]
        context = torch.autocast(self.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        with context:
            return self.model(pixel_values=pixel_values, masks=model_inputs["masks"])

    def postprocess(
        self, window_results: list[dict], job: _VideoJob, threshold: float = DEFAULT_THRESHOLD, top_k: int | None = None
    ) -> list[dict]:
        """Merge a video's windows (one NMS over all of them, as OpenTAD's test engine) and format its detections."""
        processor = self.video_processor
        if processor.sampling_method == "resize":
            (result,) = window_results  # already NMS'd: resize mode has one row per video
            result = keep_best_detections(result, threshold, top_k)
        else:
            (result,) = processor.merge_window_detections(window_results, threshold=threshold, top_k=top_k)
        return _format_detections(result, job.duration)

    # -- calling ---------------------------------------------------------------------------------------------

    def __call__(self, videos, **kwargs):
        """Detect actions in one video path (returns its list of detections) or a list of paths (one list each).

        See the class docstring for the arguments. With `on_error="skip"`, `self.skipped_videos` lists
        `{"video", "reason"}` of the videos skipped by this call.
        """
        single = isinstance(videos, (str, os.PathLike))
        if not single and not isinstance(videos, (list, tuple)):
            raise TypeError(
                f"videos must be a video file path (str or os.PathLike) or a list of them, got {type(videos).__name__}"
            )
        results = list(self.detect([videos] if single else videos, **kwargs))
        self.skipped_videos = [{"video": r.video, "reason": str(r.error)} for r in results if r.error is not None]
        for skipped in self.skipped_videos:
            logger.warning(f"skipped video {skipped['video']}: {skipped['reason']}")
        return results[0].detections if single else [r.detections for r in results]

    def detect(
        self,
        videos: Iterable[str | os.PathLike],
        batch_size: int | None = None,
        progress=None,
        timings=None,
        **kwargs,
    ) -> Iterator[VideoDetections]:
        """Stream `VideoDetections`, one per video and in input order, as soon as each video is finished.

        Args:
            videos: video file paths.
            batch_size: windows per model call (default: the pipeline's `batch_size`, else 1).
            progress: optional tqdm-like bar: its `total` grows by each video's window count when the video is
                opened and `update(n)` is called after each model batch.
            timings: optional object with `add(stage, seconds)` (e.g. `adatad.detect.StageTimer`), given the
                seconds of every stage: decoding (decode thread), waiting for decoded windows, model, window
                post-processing, merging windows (post-processing thread).
            kwargs: `threshold`, `top_k`, `on_error`, `precision`, `prefetch_batches` (see the class docstring).
        """
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        forward_params = {**self._forward_params, **forward_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        on_error = preprocess_params.get("on_error", "raise")
        prefetch_batches = preprocess_params.get("prefetch_batches", DEFAULT_PREFETCH_BATCHES)
        threshold = postprocess_params.get("threshold", DEFAULT_THRESHOLD)
        top_k = postprocess_params.get("top_k")
        batch_size = int(batch_size or self._batch_size or 1)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")

        jobs = []
        for index, video in enumerate(videos):
            if not isinstance(video, (str, os.PathLike)):
                raise TypeError(
                    f"videos must be file paths (str or os.PathLike); entry {index} is {type(video).__name__}"
                )
            jobs.append(_VideoJob(index, str(video), Path(video).stem))

        timings = timings if timings is not None else _NoTimings()
        batches = _BatchProducer(self, jobs, batch_size, prefetch_batches, progress, timings)
        pending: dict[int, Future | _VideoJob] = {}  # job index -> merge future, or the failed job
        next_index = 0

        def merge(job: _VideoJob) -> list[dict]:
            start = time.perf_counter()
            try:
                return self.postprocess(job.window_results, job, threshold, top_k)
            finally:
                timings.add("merging windows (NMS)", time.perf_counter() - start)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adatad-postprocess") as merger, batches:
            for item in _timed_iteration(batches, timings, "waiting for decoded windows"):
                if isinstance(item, _VideoJob):  # a video that failed to decode
                    if on_error == "raise":
                        raise item.error
                    pending[item.index] = item
                else:
                    finished, failed = self._run_batch(item, forward_params, timings)
                    for job in failed:
                        if on_error == "raise":
                            raise job.error
                        pending[job.index] = job
                    for job in finished:
                        pending[job.index] = merger.submit(merge, job)
                    if progress is not None:
                        progress.update(len(item))
                while next_index in pending and _is_ready(pending[next_index]):
                    yield self._finish(jobs[next_index], pending.pop(next_index))
                    next_index += 1
            for index in range(next_index, len(jobs)):
                yield self._finish(jobs[index], pending.pop(index))

    def stream(
        self,
        fps: float,
        threshold: float = DEFAULT_THRESHOLD,
        precision: str = "fp32",
        batch_size: int | None = None,
        max_reach: float | None = None,
    ) -> DetectionStream:
        """Near-online detection on frames as they arrive (a camera, a recording being written).

        ```python
        >>> stream = detector.stream(fps=30.0, threshold=0.0)
        >>> for chunk in chunks:                # uint8 (T, H, W, 3), any T
        ...     print(stream.push(chunk))      # detections no later frame can change
        >>> print(stream.finish())              # the rest, once the video ends
        ```

        See `DetectionStream` for what "final" means and the latency. Args:
            fps: frame rate of the pushed frames (places detections in seconds).
            threshold: keep detections scoring at least this (as in a call).
            precision: autocast dtype of the model call (`"fp32"`, `"bf16"`, `"fp16"`).
            batch_size: windows per model call (default: the pipeline's).
            max_reach: seconds before its window's first frame a window's candidate may start (default: one window
                length); see `DetectionStream`.
        """
        return DetectionStream(self, fps, threshold, precision, batch_size or self._batch_size or 1, max_reach)

    def _run_batch(
        self, windows: list[dict], forward_params: dict, timings=None
    ) -> tuple[list[_VideoJob], list[_VideoJob]]:
        """Model + per-window candidate decoding for one batch.

        Returns the videos whose last window was in it, and the videos that failed in it: a window whose detector
        outputs hold NaN or infinity fails its whole video (`job.error` names the video and the window).
        """
        model_inputs = {
            "pixel_values": torch.stack([w["pixel_values"] for w in windows]),
            "masks": torch.stack([w["masks"] for w in windows]),
        }
        timings = timings if timings is not None else _NoTimings()
        start = time.perf_counter()
        outputs = self.forward(model_inputs, **forward_params)
        timings.add("model", time.perf_counter() - start)
        start = time.perf_counter()
        try:
            return self._window_candidates(windows, outputs)
        finally:
            timings.add("window post-processing", time.perf_counter() - start)

    def _window_candidates(self, windows: list[dict], outputs) -> tuple[list[_VideoJob], list[_VideoJob]]:
        """Per-window candidates in seconds (no NMS) appended to each window's job; see `_run_batch`."""
        proposals, scores = decode_candidates(
            outputs.logits, outputs.pred_offsets, outputs.points, outputs.feature_mask
        )
        failed, rows = [], []
        for row, window in enumerate(windows):
            job = window["job"]
            if job.error is not None:
                continue  # another window of this video failed (decoding or detector): the video is skipped
            try:
                check_finite_candidates(proposals[row], scores[row], job.path, window["video_meta"])
            except NonFiniteDetectorOutputError as error:
                job.error = error
                failed.append(job)
                continue
            rows.append(row)
        if not rows:
            return [], failed
        candidates = {"proposals": [proposals[r] for r in rows], "scores": [scores[r] for r in rows]}
        metas = [windows[r]["video_meta"] for r in rows]
        if self.video_processor.sampling_method == "resize":
            results = self.video_processor.post_process_temporal_detection(
                candidates, metas, class_names=self.class_names
            )
        else:
            results = self.video_processor.post_process_temporal_detection(
                candidates, metas, class_names=self.class_names, merge_windows=False
            )
        finished = []
        for row, result in zip(rows, results):
            job = windows[row]["job"]
            if job.error is not None:
                continue
            job.window_results.append(result)
            if len(job.window_results) == len(job.window_starts):
                finished.append(job)
        return finished, failed

    @staticmethod
    def _finish(job: _VideoJob, outcome: Future | _VideoJob) -> VideoDetections:
        result = VideoDetections(
            job.path, job.video_id, duration=job.duration, num_windows=len(job.window_starts or [])
        )
        if isinstance(outcome, _VideoJob):
            result.error = outcome.error
        else:
            result.detections = outcome.result()
        job.window_results = []
        return result


def _format_detections(result: dict, duration: float) -> list[dict]:
    """A merged post-processing result -> `[{"label", "score", "segment": [start_s, end_s]}]` inside `[0, duration]`."""
    detections = []
    for (start, end), name, score in zip(result["segments"].tolist(), result["label_names"], result["scores"].tolist()):
        # Post-processing rounds like OpenTAD (4 decimals for scores, 2 for seconds) in float32: give back the
        # decimal values and keep segments inside the video after rounding.
        start, end = (min(max(round(value, 2), 0.0), duration) for value in (start, end))
        detections.append({"label": name, "score": round(score, 4), "segment": [start, end]})
    return detections


def _is_ready(outcome: Future | _VideoJob) -> bool:
    return not isinstance(outcome, Future) or outcome.done()


class _NoTimings:
    """Stands in for a `timings` object when none is given."""

    def add(self, stage: str, seconds: float) -> None:
        pass


def _timed_iteration(iterable, timings, stage: str):
    """Yields the items of `iterable`, adding the time spent waiting for each to `stage`."""
    iterator = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            timings.add(stage, time.perf_counter() - start)
        yield item


class _BatchProducer:
    """Iterates over model batches (lists of window dicts) and failed videos (`_VideoJob` with `error`).

    With `prefetch_batches > 0` a daemon thread decodes ahead into a bounded queue while the caller runs the
    model; with 0 everything happens in the calling thread. Windows of a video that fails part-way are dropped
    from the batch being filled; windows already handed out are ignored by the caller (`job.error` is set).
    """

    def __init__(
        self,
        pipe: TemporalActionDetectionPipeline,
        jobs: Sequence[_VideoJob],
        batch_size: int,
        prefetch_batches: int,
        progress,
        timings,
    ):
        self.pipe = pipe
        self.timings = timings
        self.jobs = jobs
        self.batch_size = batch_size
        self.prefetch_batches = prefetch_batches
        self.progress = progress
        self._stop = threading.Event()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def _generate(self) -> Iterator[list[dict] | _VideoJob]:
        batch: list[dict] = []
        for job in self.jobs:
            first_window = 0
            try:
                while job.window_starts is None or first_window < len(job.window_starts):
                    # Decode the windows the current batch still has room for (a whole batch for the next video).
                    group = self.batch_size - len(batch)
                    start = time.perf_counter()
                    windows = self.pipe.preprocess(job, first_window, group)
                    self.timings.add("decoding", time.perf_counter() - start)
                    if first_window == 0 and self.progress is not None:
                        self.progress.total = (self.progress.total or 0) + len(job.window_starts)
                        self.progress.refresh()
                    first_window += len(windows)
                    batch.extend(windows)
                    if len(batch) == self.batch_size:
                        yield batch
                        batch = []
                    if self._stop.is_set():
                        return
            except Exception as error:
                if not is_decode_error(error):
                    raise
                job.error = error
                batch = [window for window in batch if window["job"] is not job]
                yield job
        if batch:
            yield batch

    def _put(self, item) -> bool:
        """Queue `item` unless the caller stopped listening (never block a thread nobody will join)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill_queue(self):
        try:
            for item in self._generate():
                if not self._put(item):
                    return
            self._put(_END_OF_STREAM)
        except BaseException as error:  # re-raised in the calling thread
            self._put(error)

    def __iter__(self) -> Iterator[list[dict] | _VideoJob]:
        if self.prefetch_batches == 0:
            yield from self._generate()
            return
        self._queue = queue.Queue(maxsize=self.prefetch_batches)
        self._thread = threading.Thread(target=self._fill_queue, name="adatad-decode", daemon=True)
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is _END_OF_STREAM:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        # Stop the decoder thread when the caller is done or gave up (exception, generator closed).
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _overlap_chains(segments: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chains of overlapping candidates inside each group: `(chain id per candidate, latest end per chain)`. Sorted by
    start, a candidate opens a new chain when it starts at or after the latest end so far in its group."""
    chain_of = torch.empty(segments.shape[0], dtype=torch.long)
    chain_ends, num_chains = [], 0
    for group in torch.unique(groups).tolist():
        members = torch.where(groups == group)[0]
        order = members[segments[members, 0].sort(stable=True).indices]
        starts, running_end = segments[order, 0], torch.cummax(segments[order, 1], 0).values
        opens = torch.ones_like(starts, dtype=torch.bool)
        opens[1:] = starts[1:] >= running_end[:-1]
        chain = torch.cumsum(opens.long(), 0) - 1
        chain_of[order] = chain + num_chains
        # the running end is largest at each chain's last member
        last = torch.ones_like(opens)
        last[:-1] = opens[1:]
        chain_ends.append(running_end[last])
        num_chains += int(chain[-1]) + 1
    return chain_of, torch.cat(chain_ends)


def _overlaps_are_local(settings: PostProcessingSettings) -> bool:
    """Whether NMS lets only overlapping candidates change each other: so for every soft method (a zero IoU leaves a
    score as it is) except vanilla/hard NMS with `iou_threshold <= 0`, which suppress non-overlapping candidates too."""
    return not (settings.nms_method in ("vanilla", "hard") and settings.nms_iou_threshold <= 0)


class DetectionStream:
    """Detections of a video that arrives in chunks, each returned as soon as no later frame can change it.

    `push(frames)` takes uint8 `(T, H, W, 3)` chunks (any `T`); every sliding window whose frames are all in runs at
    once (OpenTAD's windows of the whole video: regular windows run as their frames arrive, the last, end-aligned
    one in `finish()`, when the length is known). `finish()` returns what remains. The union of what `push` and
    `finish` return equals `detector(video, threshold=...)` on the same frames when the processor's `max_segments`
    does not cut the result (it is applied to each emitted group here, to the whole video offline).

    When a detection is final: the windows of a video are merged by one NMS over all their candidates, and NMS lets
    candidates of one class change each other only through overlaps, so a chain of overlapping candidates (one
    class) is settled once no later window can add a candidate overlapping it. A later window starts at or after
    `min(next regular window start, end of the frames so far - one window)`; its candidates are taken to start no
    earlier than `max_reach` seconds (default one window length) before its first frame. A chain that ends before
    that line is merged, thresholded and returned. `late_candidates` counts candidates that started before a line
    already used (a model regressing further back than `max_reach`); when it is not 0 the streamed result may differ
    from the offline one, and a warning says so. Where two candidates of one class and chain have exactly equal
    scores, OpenTAD's tie-break depends on the order of all the video's candidates; the chain is then merged as if
    alone.

    Latency: a detection ending at second `e` is returned once the chain around it has closed and the line has
    passed its end: at the earliest about `max_reach + one window` after `e` (dense candidates that overlap without
    a gap delay it further; `docs/inference.md` gives measured figures).
    """

    def __init__(self, pipe: TemporalActionDetectionPipeline, fps: float, threshold, precision, batch_size, max_reach):
        processor = pipe.video_processor
        if processor.sampling_method != "sliding_window":
            raise ValueError(
                f"streaming needs a sliding-window processor; this one samples '{processor.sampling_method}' (one "
                "input per whole video): call the pipeline on the finished video instead"
            )
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"`fps` must be a number > 0, got {fps!r}.")
        check_threshold_and_top_k(threshold, None)
        if precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {sorted(PRECISIONS)}, got {precision!r}.")
        self.pipe = pipe
        self.fps = float(fps)
        self.threshold = float(threshold)
        self.precision = precision
        self.batch_size = int(batch_size)
        self.settings = processor.post_processing_settings()
        self.window_frames = processor.window_size * processor.snippet_stride
        self.max_reach = self.window_frames / self.fps if max_reach is None else float(max_reach)
        self.late_candidates = 0
        self.num_frames = 0
        self._chunks: list[torch.Tensor] = []
        self._buffer_start = 0  # frame index of the first buffered frame
        self._windows_run = 0  # regular windows already through the model
        self._line = -math.inf  # candidates ending before this (seconds) were settled
        self._job = _VideoJob(0, "<stream>", "stream", fps=self.fps)
        # Candidates not yet settled, in the order the offline merge concatenates them (window, then candidate).
        self._segments = torch.zeros(0, 2)
        self._scores = torch.zeros(0)
        self._labels = torch.zeros(0, dtype=torch.long)
        self._label_names: list[str] = []
        # Chains whose best score is below `min_score`, held until their class is known to have a better one.
        self._below_min: list[dict] = []
        self._groups_above_min: set[int] = set()
        self._finished = False

    # -- public -------------------------------------------------------------------------------------------------

    def push(self, frames) -> list[dict]:
        """Adds frames (uint8 `(T, H, W, 3)`, numpy or torch); returns the detections that became final,
        `[{"label", "score", "segment": [start_s, end_s]}]` by descending score."""
        if self._finished:
            raise RuntimeError("this stream is finished; start a new one with `detector.stream(...)`")
        chunk = torch.as_tensor(frames)
        if chunk.ndim != 4 or chunk.dtype != torch.uint8 or chunk.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames (T, H, W, 3), got {tuple(chunk.shape)} {chunk.dtype}")
        if chunk.shape[0] == 0:
            return []
        self._chunks.append(chunk)
        self.num_frames += chunk.shape[0]
        processor = self.pipe.video_processor
        window_stride_frames = max(1, int(processor.window_size * (1 - processor.window_overlap)))
        window_stride_frames *= processor.snippet_stride
        ready = []
        while self._windows_run * window_stride_frames + self.window_frames <= self.num_frames:
            ready.append(self._windows_run * window_stride_frames)
            self._windows_run += 1
        self._run_windows(ready, duration=math.inf)
        # The first frame a later window can start at: the next regular window, or the end-aligned last one.
        num_snippets = len(range(0, self.num_frames, processor.snippet_stride))
        last_window_start = max(0, num_snippets - processor.window_size) * processor.snippet_stride
        next_start = min(self._windows_run * window_stride_frames, last_window_start)
        self._drop_frames_before(next_start)
        if not _overlaps_are_local(self.settings):
            return []
        # Seconds are rounded to 2 decimals before NMS: keep one step of margin below the line.
        return self._settle(next_start / self.fps - self.max_reach - 0.01)

    def finish(self) -> list[dict]:
        """Runs the windows that need the video's length (the end-aligned last one); returns every detection not
        returned yet."""
        if self._finished:
            raise RuntimeError("this stream is already finished")
        self._finished = True
        if self.num_frames == 0:
            raise ValueError("no frames were pushed: a video needs at least one frame")
        processor = self.pipe.video_processor
        duration = self.num_frames / self.fps
        starts = processor.window_start_frames(self.num_frames)
        self._run_windows(starts[self._windows_run :], duration=duration)
        self._chunks = []
        # Windows that ran before the length was known were not clipped to the video's end: clip them now, as the
        # offline run does (min and 2-decimal rounding commute, both being monotonic).
        end = torch.tensor(round(float(torch.tensor(duration, dtype=torch.float32)), 2), dtype=torch.float32)
        self._segments = torch.minimum(self._segments, end)
        detections = self._settle(math.inf)
        held = [chain for chain in self._below_min if chain["group"] not in self._groups_above_min]
        if held:
            # These classes never had a candidate scoring at least `min_score`: NMS keeps its first pick among all
            # of the class's candidates, so they are merged together.
            detections += self._merge(
                torch.cat([c["segments"] for c in held]), torch.cat([c["scores"] for c in held]),
                torch.cat([c["labels"] for c in held]), [n for c in held for n in c["label_names"]],
                torch.cat([c["order"] for c in held]),
            )
        return sorted(detections, key=lambda d: -d["score"])

    # -- windows -----------------------------------------------------------------------------------------------

    def _frames(self) -> torch.Tensor:
        if len(self._chunks) > 1:
            self._chunks = [torch.cat(self._chunks)]
        return self._chunks[0]

    def _drop_frames_before(self, frame: int) -> None:
        if frame > self._buffer_start and self._chunks:
            self._chunks = [self._frames()[frame - self._buffer_start :]]
            self._buffer_start = frame

    def _run_windows(self, starts: Sequence[int], duration: float) -> None:
        processor = self.pipe.video_processor
        for first in range(0, len(starts), self.batch_size):
            windows = []
            for start in starts[first : first + self.batch_size]:
                sample = processor.sample_frames(self.num_frames, window_start_frame=start)
                indices = torch.from_numpy(sample.frame_indices - self._buffer_start)
                windows.append(
                    {
                        "pixel_values": processor.transform_frames(self._frames()[indices]),
                        "masks": torch.from_numpy(sample.mask),
                        "video_meta": processor.video_meta(self._job.key, self.fps, duration, start),
                    }
                )
            self._add_candidates(windows)

    def _add_candidates(self, windows: list[dict]) -> None:
        """Model + per-window candidates in seconds (no NMS), appended to the unsettled ones."""
        pipe = self.pipe
        outputs = pipe.forward(
            {"pixel_values": torch.stack([w["pixel_values"] for w in windows]),
             "masks": torch.stack([w["masks"] for w in windows])},
            precision=self.precision,
        )
        proposals, scores = decode_candidates(
            outputs.logits, outputs.pred_offsets, outputs.points, outputs.feature_mask
        )
        metas = [w["video_meta"] for w in windows]
        for row, meta in enumerate(metas):
            check_finite_candidates(proposals[row], scores[row], self._job.path, meta)
        results = pipe.video_processor.post_process_temporal_detection(
            {"proposals": proposals, "scores": scores}, metas, class_names=pipe.class_names, merge_windows=False
        )
        for result in results:
            segments = result["segments"].reshape(-1, 2)
            late = int((segments[:, 0] < self._line).sum())
            if late:
                if not self.late_candidates:
                    logger.warning(
                        f"a window's candidates start before a line already settled ({self._line:.2f} s): the "
                        "streamed detections may differ from the offline ones; pass a larger `max_reach`"
                    )
                self.late_candidates += late
            self._segments = torch.cat((self._segments, segments))
            self._scores = torch.cat((self._scores, result["scores"].reshape(-1)))
            self._labels = torch.cat((self._labels, result["labels"].reshape(-1).long()))
            self._label_names += result["label_names"]

    # -- settling ----------------------------------------------------------------------------------------------

    def _groups(self) -> torch.Tensor:
        """NMS group of each unsettled candidate: its class (per-class NMS) or one group."""
        return self._labels if self.settings.multiclass else torch.zeros_like(self._labels)

    def _settle(self, line: float) -> list[dict]:
        """Merges and returns the chains of overlapping candidates (per NMS group) that end at or before `line`."""
        self._line = max(self._line, line)
        if self._scores.numel() == 0:
            return []
        groups = self._groups()
        chain_of, chain_end = _overlap_chains(self._segments, groups)
        settled = chain_end[chain_of] <= line
        if not bool(settled.any()):
            return []

        index = torch.where(settled)[0]  # offline order
        segments, scores, labels = self._segments[index], self._scores[index], self._labels[index]
        names = [self._label_names[i] for i in index.tolist()]
        chain_of_settled, groups_of_settled = chain_of[index], groups[index]
        keep = self._keep_above_min(chain_of_settled, groups_of_settled, segments, scores, labels, names, index)

        remaining = torch.where(~settled)[0]
        self._label_names = [self._label_names[i] for i in remaining.tolist()]
        self._segments, self._scores, self._labels = (
            self._segments[remaining], self._scores[remaining], self._labels[remaining]
        )
        if not bool(keep.any()):
            return []
        kept = torch.where(keep)[0]
        return self._merge(segments[kept], scores[kept], labels[kept], [names[i] for i in kept.tolist()], kept)

    def _keep_above_min(self, chains, groups, segments, scores, labels, names, index) -> torch.Tensor:
        """Which settled candidates go to NMS now. NMS drops every candidate below `min_score` except the first
        pick of a group whose best score is below it: a chain without a candidate at `min_score` is held until its
        group is known to have one (then it contributes nothing) or the video ends."""
        min_score = self.settings.min_score
        keep = torch.ones_like(scores, dtype=torch.bool)
        self._groups_above_min.update(groups[scores >= min_score].unique().tolist())
        if not bool((scores < min_score).any()):
            return keep
        best = torch.full((int(chains.max()) + 1,), -math.inf).scatter_reduce(0, chains, scores, "amax")
        for chain in torch.unique(chains[best[chains] < min_score]).tolist():
            members = torch.where(chains == chain)[0]
            keep[members] = False
            group = int(groups[members[0]])
            if group not in self._groups_above_min:
                self._below_min.append(
                    {"group": group, "segments": segments[members], "scores": scores[members],
                     "labels": labels[members], "label_names": [names[i] for i in members.tolist()],
                     "order": index[members]}
                )
        return keep

    def _merge(self, segments, scores, labels, names, order) -> list[dict]:
        """One offline-style merge (NMS, rounding, threshold, clipping) of settled chains, in offline order."""
        position = order.argsort()
        window = {
            "video_id": self._job.key, "segments": segments[position], "scores": scores[position],
            "labels": labels[position], "label_names": [names[i] for i in position.tolist()],
        }
        (result,) = self.pipe.video_processor.merge_window_detections([window], threshold=self.threshold)
        # Before the end the length is unknown; settled segments lie before the frames seen so far anyway.
        return _format_detections(result, self.num_frames / self.fps if self._finished else math.inf)


class ModelFolderError(FileNotFoundError):
    """`--model` / `model=` names no usable AdaTAD folder (missing folder or files, unknown Hub repo)."""


def resolve_model_folder(model: str | os.PathLike) -> Path:
    """A local folder as given, or a Hub repo id (`owner/name`, optionally `owner/name@revision`) resolved through the
    Hugging Face cache: cached files are used without any network access; otherwise they are downloaded (unless
    `HF_HUB_OFFLINE=1`). Raises `ModelFolderError` naming what is missing."""
    folder = Path(model)
    if folder.is_dir():
        return folder
    repo_id, _, revision = str(model).partition("@")
    if os.path.isabs(str(model)) or str(model).startswith(".") or repo_id.count("/") != 1:
        raise ModelFolderError(
            f"model folder '{folder}' does not exist; pass the folder written by save_pretrained or by "
            "conversion_scripts/convert_opentad_to_adatad.py, or a Hub repo id such as owner/name"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        try:
            return Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
        except LocalEntryNotFoundError:
            return Path(snapshot_download(repo_id, revision=revision or None))
    except HFValidationError as error:
        raise ModelFolderError(f"'{model}' is neither a folder nor a valid Hub repo id: {error}") from error
    except Exception as error:  # network, authentication, unknown repo: all end the same way for the user
        raise ModelFolderError(
            f"'{model}' is not a folder, and the Hub repo '{repo_id}' is not in the Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or 'default cache'}) and could not be downloaded: {error}"
        ) from error


def load_detection_pipeline(
    model: str | os.PathLike, trust_remote_code: bool = False, **kwargs
) -> TemporalActionDetectionPipeline:
    """The `temporal-action-detection` pipeline of a model folder or Hub repo id, after checking that it holds a model
    and a video processor (errors name the folder).

    By default the folder is loaded with the installed `adatad` classes and no code from the folder runs. With
    `trust_remote_code=True` the folder's own Python files (modeling_adatad.py, processing_adatad.py, ...) are
    imported and run: only for folders whose code you have read.

    Keyword arguments go to `transformers.pipeline` (e.g. `device`, `batch_size`, `threshold`).
    """
    from transformers import pipeline

    # Imported by name: transformers scans this file's import statements when a saved folder's copy of it loads, and
    # the folder does not carry model_loading.py (only the installed loader below uses it).
    model_loading = importlib.import_module(f"{__package__}.model_loading")

    folder = resolve_model_folder(model)
    missing = [name for name in ("config.json", "video_preprocessor_config.json") if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(
            f"model folder '{folder}' lacks {', '.join(missing)}: it must hold the model (config.json + weights) and "
            "its AdaTADVideoProcessor (video_preprocessor_config.json), both saved with save_pretrained"
        )
    # Loaded here rather than by `pipeline`, which would initialise missing weights at random and only log it, and
    # stop with a traceback on weights of other shapes than config.json gives them.
    try:
        detection_model, _ = model_loading.load_complete_model(
            AutoModel, folder, trust_remote_code=trust_remote_code, dtype=kwargs.pop("dtype", "auto")
        )
    except model_loading.MissingWeightsError as error:
        raise ModelFolderError(str(error)) from error
    return pipeline(
        TASK,
        model=detection_model,
        video_processor=str(folder),
        trust_remote_code=trust_remote_code,
        pipeline_class=TemporalActionDetectionPipeline,
        **kwargs,
    )


# Only the installed package registers the task: the copy of this file in a saved model folder, imported when a
# folder is loaded with trust_remote_code=True, must not replace the installed pipeline for every later call.
if __package__ == "adatad":
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=TemporalActionDetectionPipeline, pt_model=AutoModel, type="video"
    )

__all__ = [
    "TemporalActionDetectionPipeline",
    "DetectionStream",
    "VideoDetections",
    "ModelFolderError",
    "ModelProcessorMismatchError",
    "load_detection_pipeline",
    "resolve_model_folder",
]
