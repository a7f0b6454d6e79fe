"""`--set` overrides that shrink a preset's model to seconds per epoch, shared by the tests that run `run_tad.py`:
2 layers of width 32, 32 frames at 32x32, 3 FPN levels, no loader workers, one warm-up epoch."""

TINY_RUN_OVERRIDES = [
    "model.backbone_config.hidden_size=32",
    "model.backbone_config.num_hidden_layers=2",
    "model.backbone_config.intermediate_size=64",
    "model.backbone_config.image_size=32",
    "model.num_frames=32",
    "model.image_size=32",
    "model.feature_length=32",
    "model.max_seq_len=32",
    "model.projection_hidden_size=32",
    "model.head_hidden_size=32",
    "model.projection_arch=[2,1,2]",
    "model.fpn_strides=[1,2,4]",
    "model.fpn_regression_ranges=[[0,4],[4,8],[8,10000]]",
    'processor.size={"shortest_edge":32}',
    'processor.crop_size={"height":32,"width":32}',
    'processor.train_size={"shortest_edge":32}',
    "data.num_workers=0",
    "training.warmup_epochs=1",
]
