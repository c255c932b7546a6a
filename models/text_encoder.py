"""The text condition: a T5 encoder (flan-t5-xl in the release) and its tokenizer, from a local folder."""
import os

import torch
from transformers import AutoTokenizer, T5EncoderModel


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
