"""Timeline pictures of temporal action detections against the ground truth.

`plot_timeline` draws, for each video, one lane with the ground-truth segments and below it a few lanes
with the detections (colour = class, opacity and printed number = score), on a time axis in seconds.
It uses matplotlib's Agg canvas directly, so it works without a display and leaves pyplot's state alone.
"""

import numbers
from pathlib import Path

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
except ImportError as error:  # matplotlib is an optional extra
    raise ImportError(f"timeline plots need matplotlib ({error}): pip install 'adatad[plot]'") from error

# Figure geometry in inches. The PNG is `width_inches * dpi` pixels wide and `height * dpi` pixels high, with
#   height = LEGEND_MARGIN + legend_rows * LEGEND_ROW_HEIGHT
#            + num_videos * (VIDEO_HEADER_HEIGHT + num_lanes * LANE_HEIGHT),
#   legend_rows = ceil((num_classes + 3) / LEGEND_COLUMNS), num_lanes = 1 + num_detection_lanes.
LEGEND_COLUMNS = 7
LEGEND_MARGIN = 0.35
LEGEND_ROW_HEIGHT = 0.22
VIDEO_HEADER_HEIGHT = 0.75
LANE_HEIGHT = 0.34
BAR_HEIGHT = 0.72  # fraction of a lane a bar fills
TEXT_SIZE = 7.5  # points, text inside the bars


def _class_colors(class_names):
    """One saturated colour per class: tab10, then Dark2 (up to 18 classes), then hues spaced evenly.

    Pale colours are avoided because a pale bar reads as a low-score detection.
    """
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb

    if len(class_names) <= 18:
        palette = [colormaps["tab10"](index) for index in range(10)] + [
            colormaps["Dark2"](index) for index in range(8)
        ]
    else:
        # Neighbouring hues alternate between a bright and a dark shade so that they stay distinguishable.
        palette = [
            tuple(hsv_to_rgb((index / len(class_names), 0.85, 0.9 if index % 2 == 0 else 0.6)))
            for index in range(len(class_names))
        ]
    return {name: palette[index] for index, name in enumerate(class_names)}


def _unwrap(mapping, key, argument_name):
    """Accepts both ``{key: {...}}`` (full file layout) and the inner dict."""
    if not isinstance(mapping, dict):
        raise TypeError(f"`{argument_name}` must be a dict, got {type(mapping).__name__}")
    inner = mapping.get(key)
    return inner if isinstance(inner, dict) else mapping


def _label_name(label, class_names, where):
    """Class name of `label` (a name, or an index into `class_names`)."""
    if isinstance(label, str):
        if class_names is not None and label not in class_names:
            raise ValueError(
                f"{where}: label {label!r} is not in `class_names` {list(class_names)}; "
                "pass class_names=None to use all labels"
            )
        return label
    if isinstance(label, numbers.Integral) and class_names is not None and 0 <= label < len(class_names):
        return class_names[int(label)]
    raise ValueError(f"{where}: label {label!r} must be a class name (or an index into `class_names`)")


def _segment(entry, where):
    """(start, end) floats of one annotation or detection entry."""
    if not isinstance(entry, dict) or "segment" not in entry or "label" not in entry:
        raise ValueError(f"{where} must be a dict with 'segment' [start, end] and 'label', got {entry!r}")
    try:
        start, end = (float(value) for value in entry["segment"])
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: 'segment' must be two numbers [start, end] in seconds, got {entry['segment']!r}"
        ) from None
    return start, end


def _count(number, noun):
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _pack_into_lanes(detections, num_lanes):
    """Greedy lane packing: detections in descending score take the first lane where they overlap nothing.

    Returns (list of lanes, each a list of detections; number of detections that found no free lane).
    """
    lanes = [[] for _ in range(num_lanes)]
    num_hidden = 0
    for detection in sorted(detections, key=lambda item: -item["score"]):
        for lane in lanes:
            if all(detection["end"] <= other["start"] or detection["start"] >= other["end"] for other in lane):
                lane.append(detection)
                break
        else:
            num_hidden += 1
    return lanes, num_hidden


def _draw_bar(axes, start, end, lane_y, color, alpha, texts, seconds_per_character):
    """One segment bar with an outline in the full class colour and the first of `texts` that fits inside."""
    axes.barh(
        lane_y, end - start, left=start, height=BAR_HEIGHT, color=to_rgba(color, alpha), edgecolor=color, linewidth=1.2
    )
    fitting = [text for text in texts if end - start >= seconds_per_character * (len(text) + 2)]
    if fitting:
        # Colour the bar shows over the white background, to pick readable text.
        shown = [alpha * channel + (1.0 - alpha) for channel in to_rgba(color)[:3]]
        luminance = 0.299 * shown[0] + 0.587 * shown[1] + 0.114 * shown[2]
        text_color = "white" if luminance < 0.5 else "black"
        axes.text(
            (start + end) / 2,
            lane_y,
            fitting[0],
            ha="center",
            va="center",
            fontsize=TEXT_SIZE,
            color=text_color,
            clip_on=True,
        )


def plot_timeline(
    ground_truth,
    predictions,
    output_path,
    *,
    video_ids=None,
    class_names=None,
    score_threshold=0.1,
    max_videos=4,
    num_detection_lanes=3,
    width_inches=12.0,
    dpi=100,
):
    """Draws ground truth vs detections on a time axis, one block of lanes per video, and saves a PNG.

    Each video gets one panel titled with its id: the top lane holds the ground-truth segments (solid,
    labelled with the class name), the lanes below the detections with ``score >= score_threshold``
    (colour = class, opacity and printed number = score). Detections are packed by descending score,
    so the first detection lane holds the most confident non-overlapping ones; detections that find no
    free lane are counted in the panel title. Dotted lines mark the ground-truth boundaries.

    Args:
        ground_truth: ActivityNet ``database`` layout, ``{"database": {video_id: {"duration": s,
            "annotations": [{"segment": [s, e], "label": name}, ...]}}}`` (the inner dict works too).
        predictions: ActivityNet submission layout, ``{video_id: [{"segment": [s, e], "label": name,
            "score": float}, ...]}`` (a full ``{"results": {...}}`` file works too).
        output_path: where to write the PNG (parent folders are created).
        video_ids: videos to draw, in this order; default: the first `max_videos` ids (sorted) that have
            predictions, or of the ground truth if there are no predictions.
        class_names: class order for colours and the legend; default: the sorted labels found. Integer
            labels are read as indices into it.
        score_threshold: detections below this score are not drawn.
        max_videos: how many videos to draw when `video_ids` is None.
        num_detection_lanes: detection lanes per video.
        width_inches, dpi: the PNG is ``width_inches * dpi`` pixels wide; its height follows from the number
            of videos and lanes (see the module constants).

    Returns:
        `pathlib.Path` of the written PNG.
    """
    database = _unwrap(ground_truth, "database", "ground_truth")
    results = _unwrap(predictions, "results", "predictions")
    if num_detection_lanes < 1:
        raise ValueError(f"`num_detection_lanes` ({num_detection_lanes}) must be at least 1")

    if video_ids is None:
        with_predictions = sorted(video_id for video_id in database if results.get(video_id))
        video_ids = (with_predictions or sorted(database))[:max_videos]
    video_ids = list(video_ids)
    missing = [video_id for video_id in video_ids if video_id not in database]
    if missing:
        raise ValueError(f"video(s) {missing} are not in `ground_truth`; available e.g. {sorted(database)[:5]}")
    if not video_ids:
        raise ValueError("nothing to draw: `ground_truth` has no videos (or `video_ids` is empty)")

    # Collect and check every segment first, so a bad entry fails before anything is drawn.
    panels = []
    found_labels = set()
    for video_id in video_ids:
        video = database[video_id]
        if not isinstance(video, dict):
            raise ValueError(
                f"ground_truth[{video_id!r}] must be a dict with 'duration' and 'annotations', got {video!r}"
            )
        gt_segments = []
        for index, annotation in enumerate(video.get("annotations", [])):
            where = f"ground_truth[{video_id!r}]['annotations'][{index}]"
            start, end = _segment(annotation, where)
            gt_segments.append(
                {"start": start, "end": end, "label": _label_name(annotation["label"], class_names, where)}
            )
        detections = []
        for index, detection in enumerate(results.get(video_id, [])):
            where = f"predictions[{video_id!r}][{index}]"
            start, end = _segment(detection, where)
            if "score" not in detection:
                raise ValueError(f"{where} has no 'score'; detections need 'segment', 'label' and 'score'")
            score = float(detection["score"])
            if score >= score_threshold:
                detections.append(
                    {
                        "start": start,
                        "end": end,
                        "score": score,
                        "label": _label_name(detection["label"], class_names, where),
                    }
                )
        duration = float(video.get("duration") or 0.0)
        if duration <= 0:
            duration = max([item["end"] for item in gt_segments + detections] + [1.0])
        found_labels.update(item["label"] for item in gt_segments + detections)
        panels.append(
            {"video_id": video_id, "duration": duration, "ground_truth": gt_segments, "detections": detections}
        )

    class_names = list(class_names) if class_names is not None else sorted(found_labels)
    colors = _class_colors(class_names)

    handles = [Patch(facecolor=colors[name], edgecolor=colors[name], label=name) for name in class_names]
    handles += [
        Patch(facecolor=to_rgba("0.3", 0.15 + 0.85 * score), edgecolor="0.3", label=f"detection, score {score:.1f}")
        for score in (0.2, 0.5, 1.0)
    ]
    legend_rows = -(-len(handles) // LEGEND_COLUMNS)
    num_lanes = 1 + num_detection_lanes
    figure_height = (
        LEGEND_MARGIN + legend_rows * LEGEND_ROW_HEIGHT + len(panels) * (VIDEO_HEADER_HEIGHT + num_lanes * LANE_HEIGHT)
    )
    figure = Figure(figsize=(width_inches, figure_height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    all_axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]

    for axes, panel in zip(all_axes, panels, strict=True):
        duration = panel["duration"]
        # Average character width (about 0.6 em) in seconds, for an axes about 1.3 inches narrower than the figure.
        seconds_per_character = duration * (0.6 * TEXT_SIZE / 72) / max(width_inches - 1.3, 1.0)
        # Lane y positions from the top: ground truth at num_lanes - 1, detection lanes below it.
        gt_y = num_lanes - 1
        for segment in panel["ground_truth"]:
            _draw_bar(
                axes,
                segment["start"],
                segment["end"],
                gt_y,
                colors[segment["label"]],
                1.0,
                [segment["label"]],
                seconds_per_character,
            )
            for edge in (segment["start"], segment["end"]):
                axes.axvline(edge, color="0.45", linewidth=0.7, linestyle=":", zorder=0)
        lanes, num_hidden = _pack_into_lanes(panel["detections"], num_detection_lanes)
        for lane_index, lane in enumerate(lanes):
            lane_y = gt_y - 1 - lane_index
            for detection in lane:
                alpha = 0.15 + 0.85 * min(max(detection["score"], 0.0), 1.0)
                _draw_bar(
                    axes,
                    detection["start"],
                    detection["end"],
                    lane_y,
                    colors[detection["label"]],
                    alpha,
                    [f"{detection['label']} {detection['score']:.2f}", f"{detection['score']:.2f}"],
                    seconds_per_character,
                )
        if not panel["detections"]:
            axes.text(
                duration / 2,
                gt_y - 1,
                f"no detections with score >= {score_threshold:g}",
                ha="center",
                va="center",
                fontsize=8,
                color="0.4",
            )
        axes.axhline(gt_y - 0.5, color="0.3", linewidth=0.8)
        axes.set_xlim(0.0, duration)
        axes.set_ylim(-0.5, num_lanes - 0.5)
        axes.set_yticks(
            [gt_y] + [gt_y - 1 - index for index in range(num_detection_lanes)],
            ["ground truth"]
            + [
                f"detections {index + 1}" if num_detection_lanes > 1 else "detections"
                for index in range(num_detection_lanes)
            ],
            fontsize=8,
        )
        axes.tick_params(axis="x", labelsize=8)
        axes.set_xlabel("time (s)", fontsize=8, labelpad=1)
        hidden_note = f", {num_hidden} more overlapping not shown" if num_hidden else ""
        axes.set_title(
            f"{panel['video_id']}  ({_count(len(panel['ground_truth']), 'ground-truth segment')}, "
            f"{_count(len(panel['detections']), 'detection')} with score >= {score_threshold:g}{hidden_note})",
            fontsize=9,
            loc="left",
        )
        axes.grid(axis="x", color="0.9", linewidth=0.6)
        axes.set_axisbelow(True)

    figure.legend(
        handles=handles, loc="outside upper center", ncol=min(len(handles), LEGEND_COLUMNS), fontsize=8, frameon=False
    )

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path, format="png")
    return output_path
