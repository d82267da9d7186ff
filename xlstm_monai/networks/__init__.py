# Copyright (c) xlstm-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

from __future__ import annotations

from .checkpoint_file import CheckpointError, load_model_weights, read_checkpoint, read_model_weights
from .onnx_network import OnnxNetwork, export_bundle_onnx
from .pretrained import (
    FOUNDATION_CHECKPOINT,
    EncoderLoadReport,
    find_encoder,
    fine_tuning_param_groups,
    foundation_checkpoint,
    load_pretrained,
    load_pretrained_encoder,
    pretrained_start,
    read_encoder_state,
)
from .xlstm_classifier import POOLING_MODES, XLSTMClassifier, XlstmClassifier
from .xlstm_encoder import XLSTMEncoder, XLSTMEncoderOutput, filter_xlstm_ssl
from .xlstm_unet import XLSTMUNet, XlstmUNet, XLSTMUNetDecoder, full_resolution_output
