"""The text condition: a T5 encoder (flan-t5-xl in the release) and its tokenizer, from a local folder."""
import json
import os

import torch
from transformers import AutoTokenizer, T5EncoderModel

from .checkpoint import CheckpointError

TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


def check_text_encoder_folder(folder):
    """The encoder's width (d_model), after checking, without loading any weight, that the folder would load: a T5
    config, tokenizer files, and safetensors files whose headers read. One-line CheckpointError otherwise."""
    from safetensors import safe_open
    cfg_path = os.path.join(folder, "config.json")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
        width = int(cfg["d_model"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{cfg_path}: not a T5 encoder config ({type(err).__name__}: {err})") from None
    if not any(os.path.isfile(os.path.join(folder, n)) for n in TOKENIZER_FILES):
        raise CheckpointError(f"{folder}: no tokenizer ({' or '.join(TOKENIZER_FILES)}); copy the whole flan-t5-xl "
                              "folder")
    shards = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    if not shards:
        raise CheckpointError(f"{folder}: no .safetensors weights")
    for name in shards:
        try:
            with safe_open(os.path.join(folder, name), framework="pt") as f:
                f.keys()
        except Exception as err:  # safetensors raises its own SafetensorError (not an OSError) for a broken header
            raise CheckpointError(f"{os.path.join(folder, name)}: unreadable safetensors file ({str(err)[:120]}); "
                                  "download it again") from None
    return width


class TextEncoder:
    def __init__(self, folder, device, dtype=torch.float32, max_tokens=150):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"text encoder folder not found: {folder}")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(folder, local_files_only=True, dtype=dtype).to(device).eval()
        self.device = device
        self.max_tokens = max_tokens

    @property
    def width(self):
        return self.model.config.d_model

    def token_count(self, prompt):
        return len(self.tokenizer(prompt).input_ids)

    @torch.no_grad()
    def encode(self, prompts):
        """Per prompt: its features (L_i, width) float32, L_i ≤ max_tokens.

        The encoder sees the whole prompt (as the reference does); its output is cut to max_tokens positions.
        Prompts are padded together and masked, which leaves each prompt's real positions as if it ran alone.
        """
        batch = self.tokenizer(list(prompts), padding=True, return_tensors="pt")
        hidden = self.model(input_ids=batch.input_ids.to(self.device),
                            attention_mask=batch.attention_mask.to(self.device)).last_hidden_state.float()
        lengths = batch.attention_mask.sum(1).tolist()
        return [hidden[i, : min(n, self.max_tokens)] for i, n in enumerate(lengths)]
