"""PyTorch AdaTAD: VideoMAE with Temporal-Informative Adapters and an ActionFormer detector."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_adatad import AdaTADConfig


# ======================================================================================
# Backbone: VideoMAE with temporal adapters (written by the lead)
# ======================================================================================

# BACKBONE-SECTION-END


# ======================================================================================
# Detector: ActionFormer projection, identity FPN, heads, points, losses
# ======================================================================================

# DETECTOR-SECTION-END


# ======================================================================================
# Pretrained model and task model (written by the lead)
# ======================================================================================
