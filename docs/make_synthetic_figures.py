"""Makes the two pictures of docs/synthetic.md (run from the repository root).

    .venv/bin/python docs/make_synthetic_figures.py docs/images
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from adatad.synthetic import MOTIONS, generate_synthetic_dataset, render_action_clip
from adatad.visualization import plot_timeline

output_dir = Path(sys.argv[1])
output_dir.mkdir(parents=True, exist_ok=True)

# 1. Frame strips: each class over the same seed, so twins show the same frames in reverse order.
num_shown, num_frames = 8, 22
figure = Figure(figsize=(num_shown * 1.1 + 1.6, len(MOTIONS) * 1.15), dpi=80, layout="constrained")
FigureCanvasAgg(figure)
axes = figure.subplots(len(MOTIONS), num_shown)
for row, label in enumerate(MOTIONS):
    clip = render_action_clip(label, num_frames=num_frames, seed=row // 2 + 1)
    for column, frame_index in enumerate(np.linspace(0, num_frames - 1, num_shown).round().astype(int)):
        axes[row, column].imshow(clip[frame_index], interpolation="nearest")
        axes[row, column].set_xticks([])
        axes[row, column].set_yticks([])
        if row == 0:
            axes[row, column].set_title(f"frame {frame_index}", fontsize=8)
    axes[row, 0].set_ylabel(label.replace("_", "\n"), fontsize=8, rotation=0, ha="right", va="center")
figure.savefig(output_dir / "synthetic_classes.jpg", pil_kwargs={"quality": 88})

# 2. Timeline of the validation ground truth against jittered copies used as fake detections.
summary = generate_synthetic_dataset(tempfile.mkdtemp(), num_train_videos=0, num_val_videos=4)
database = json.loads(Path(summary["annotation_file"]).read_text())["database"]
rng = np.random.default_rng(0)
predictions = {}
for video_id, video in database.items():
    detections = []
    for annotation in video["annotations"]:
        start, end = annotation["segment"]
        for score in (0.95, 0.6, 0.3):
            jitter = rng.normal(0.0, 0.12 * (end - start), size=2)
            label = annotation["label"] if score > 0.5 else str(rng.choice(summary["class_names"]))
            detections.append({"segment": [max(0.0, start + jitter[0]), min(video["duration"], end + jitter[1])],
                               "label": label, "score": score})
    predictions[video_id] = detections
plot_timeline(database, predictions, output_dir / "synthetic_timeline.png", class_names=summary["class_names"])
