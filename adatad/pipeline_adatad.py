"""`temporal-action-detection` pipeline: video files in, action segments in seconds out.

```python
>>> import adatad.pipeline_adatad  # registers the task with transformers
>>> from transformers import pipeline
>>> detector = pipeline("temporal-action-detection", model="path/to/adatad-folder", trust_remote_code=True)
>>> detector("video.mp4", threshold=0.3)
[{"label": "CliffDiving", "score": 0.91, "segment": [12.4, 15.83]}, ...]
```

A folder written by `TemporalActionDetectionPipeline.save_pretrained` carries the task in its `config.json`
(`custom_pipelines`) and this file beside the model code, so `pipeline(model=folder, trust_remote_code=True)`
works there without importing `adatad` at all.

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
"""

from __future__ import annotations

import json
import os
import queue
import threading
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
from .configuration_adatad import AdaTADConfig
from .modeling_adatad import PIPELINE_TASK, mismatched_weight_shapes
from .post_processing import (
    NonFiniteDetectorOutputError,
    check_finite_candidates,
    check_threshold_and_top_k,
    decode_candidates,
    keep_best_detections,
)
from .processing_adatad import VideoDecodeError

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
            one dict per window: `pixel_values` float32 `(num_frames, 3, H, W)`, `masks` bool `(feature_length,)`,
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

        _, decoded_windows = processor.decode_windows(job.path, select_samples)
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
        pixel_values = model_inputs["pixel_values"].to(self.model.dtype)
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
        detections = []
        for (start, end), name, score in zip(
            result["segments"].tolist(), result["label_names"], result["scores"].tolist()
        ):
            # Post-processing rounds like OpenTAD (4 decimals for scores, 2 for seconds) in float32: give back the
            # decimal values and keep segments inside the video after rounding.
            start, end = (min(max(round(value, 2), 0.0), job.duration) for value in (start, end))
            detections.append({"label": name, "score": round(score, 4), "segment": [start, end]})
        return detections

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
        self, videos: Iterable[str | os.PathLike], batch_size: int | None = None, progress=None, **kwargs
    ) -> Iterator[VideoDetections]:
        """Stream `VideoDetections`, one per video and in input order, as soon as each video is finished.

        Args:
            videos: video file paths.
            batch_size: windows per model call (default: the pipeline's `batch_size`, else 1).
            progress: optional tqdm-like bar: its `total` grows by each video's window count when the video is
                opened and `update(n)` is called after each model batch.
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

        batches = _BatchProducer(self, jobs, batch_size, prefetch_batches, progress)
        pending: dict[int, Future | _VideoJob] = {}  # job index -> merge future, or the failed job
        next_index = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adatad-postprocess") as merger, batches:
            for item in batches:
                if isinstance(item, _VideoJob):  # a video that failed to decode
                    if on_error == "raise":
                        raise item.error
                    pending[item.index] = item
                else:
                    finished, failed = self._run_batch(item, forward_params)
                    for job in failed:
                        if on_error == "raise":
                            raise job.error
                        pending[job.index] = job
                    for job in finished:
                        pending[job.index] = merger.submit(self.postprocess, job.window_results, job, threshold, top_k)
                    if progress is not None:
                        progress.update(len(item))
                while next_index in pending and _is_ready(pending[next_index]):
                    yield self._finish(jobs[next_index], pending.pop(next_index))
                    next_index += 1
            for index in range(next_index, len(jobs)):
                yield self._finish(jobs[index], pending.pop(index))

    def _run_batch(self, windows: list[dict], forward_params: dict) -> tuple[list[_VideoJob], list[_VideoJob]]:
        """Model + per-window candidate decoding for one batch.

        Returns the videos whose last window was in it, and the videos that failed in it: a window whose detector
        outputs hold NaN or infinity fails its whole video (`job.error` names the video and the window).
        """
        model_inputs = {
            "pixel_values": torch.stack([w["pixel_values"] for w in windows]),
            "masks": torch.stack([w["masks"] for w in windows]),
        }
        outputs = self.forward(model_inputs, **forward_params)
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


def _is_ready(outcome: Future | _VideoJob) -> bool:
    return not isinstance(outcome, Future) or outcome.done()


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
    ):
        self.pipe = pipe
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
                    windows = self.pipe.preprocess(job, first_window, group)
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

    folder = resolve_model_folder(model)
    missing = [name for name in ("config.json", "video_preprocessor_config.json") if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(
            f"model folder '{folder}' lacks {', '.join(missing)}: it must hold the model (config.json + weights) and "
            "its AdaTADVideoProcessor (video_preprocessor_config.json), both saved with save_pretrained"
        )
    if json.loads((folder / "config.json").read_text()).get("model_type") == AdaTADConfig.model_type:
        mismatched = mismatched_weight_shapes(folder, AdaTADConfig.from_pretrained(folder))
        if mismatched:
            raise ModelFolderError(
                f"model folder '{folder}': {len(mismatched)} weight tensor(s) do not fit its config.json ("
                + "; ".join(mismatched[:3]) + (", ..." if len(mismatched) > 3 else "")
                + "): the config and the weights belong to different models (e.g. another num_labels or backbone "
                "size); save them together with save_pretrained"
            )
    return pipeline(
        TASK,
        model=str(folder),
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
    "VideoDetections",
    "ModelFolderError",
    "ModelProcessorMismatchError",
    "load_detection_pipeline",
    "resolve_model_folder",
]
