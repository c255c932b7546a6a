"""Load a whole MotionMillion model directory: text encoder, decoder (any precision) and motion tokenizer."""
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .checkpoint import CheckpointError
from .cpu_linear import can_pack, pack_linears
from .manifest import ModelConfig, ModelDirError, load_config
from .motion_tokenizer import MotionTokenizer, load_motion_tokenizer
from .quantize import DTYPES, QUANT_MODES, materialize
from .t2m import MotionDecoder, convert_state_dict, read_t2m_checkpoint
from .text_encoder import TextEncoder, check_text_encoder_folder


@dataclass
class MotionMillion:
    config: ModelConfig
    text_encoder: TextEncoder
    decoder: MotionDecoder
    tokenizer: MotionTokenizer
    mean: np.ndarray
    std: np.ndarray
    device: torch.device
    dtype: torch.dtype
    quant: str
    notes: list = field(default_factory=list)   # one-line warnings about fallbacks, shown to the user

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.config.root))

    def denormalize(self, features):
        return features * self.std + self.mean

    def normalize(self, features):
        return (features - self.mean) / self.std


def resolve_device(device):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelDirError(f"device {device} was asked for but no CUDA GPU is available (use the CPU)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ModelDirError(f"device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return dev


def resolve_precision(device, dtype=None, quant=None):
    """Defaults: NF4 with bf16 compute on CUDA, plain fp32 on CPU. Returns (dtype, quant, notes)."""
    notes = []
    if quant is None:
        quant = "nf4" if device.type == "cuda" else "none"
    if quant not in QUANT_MODES:
        raise ModelDirError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_MODES)}")
    if dtype is None:
        dtype = "bfloat16" if (device.type == "cuda" or quant != "none") else "float32"
    if dtype not in DTYPES:
        raise ModelDirError(f"unknown dtype {dtype!r}; choose one of float32, bfloat16, float16")
    if quant != "none" and device.type != "cuda":
        notes.append(f"no CUDA GPU: {quant} weights run on bitsandbytes' CPU kernels, which is slow; "
                     "unquantised float32 weights are the fast CPU choice")
    return DTYPES[dtype], quant, notes


def text_encoder_dtype(device, compute_dtype):
    """T5 runs in float32 on the CPU and wherever float32 compute was asked for (the reference's numbers), else in
    bfloat16: T5 overflows in float16, so a float16 request gets bfloat16 for the encoder."""
    return torch.float32 if device.type == "cpu" or compute_dtype == torch.float32 else torch.bfloat16


def load_normalization(cfg):
    out = []
    for rel in (cfg.mean, cfg.std):
        p = cfg.path(rel)
        try:
            arr = np.load(p, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError, EOFError) as err:
            raise CheckpointError(f"{p}: cannot read normalisation statistics ({err})") from None
        if arr.shape != (cfg.tokenizer.motion_dim,):
            raise CheckpointError(f"{p}: shape {arr.shape}, expected ({cfg.tokenizer.motion_dim},)")
        out.append(arr)
    return out


def packs_weights(device, dtype, quant):
    """Whether load_model runs the decoder on oneDNN-packed weights: unquantised, on a CPU oneDNN serves."""
    return quant == "none" and can_pack(device, dtype)


def pack_decoder(decoder):
    """The decoder's layers and head on oneDNN-packed weights (models/cpu_linear.py). llama_proj stays a plain
    Linear: it runs once per prompt, and its weight tells callers the decoder's device and dtype."""
    return pack_linears(decoder, skip=("llama_proj",))


def _check_files(cfg):
    missing = cfg.missing_files()
    if missing:
        role, rel = missing[0]
        raise ModelDirError(f"{cfg.root}: incomplete model directory, {role} missing ({rel})"
                            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))


def _check_decoder(cfg):
    """The decoder checkpoint, read (memory-mapped) and checked against the manifest and the text encoder's width;
    (DecoderShape, reference state dict). Cheap: the weights are not read, nor is T5 loaded."""
    t2m_path = cfg.path(cfg.t2m.file)
    shape, state = read_t2m_checkpoint(t2m_path, cfg.t2m)
    width = check_text_encoder_folder(cfg.path(cfg.text_encoder.dir))
    if shape.clip_dim != width:
        raise CheckpointError(f"{t2m_path}: llama_proj takes {shape.clip_dim}-d text features but the text encoder "
                              f"in {cfg.text_encoder.dir} gives {width}")
    return shape, state


def _check_tokenizer(cfg, shape):
    tokenizer = load_motion_tokenizer(cfg.path(cfg.tokenizer.file), cfg.tokenizer)
    if tokenizer.quantizer.codebook_size != shape.vocab_size - 2:
        raise CheckpointError(f"{cfg.path(cfg.t2m.file)}: decoder vocabulary {shape.vocab_size} does not fit the "
                              f"tokenizer's {tokenizer.quantizer.codebook_size} codes + END + PAD")
    return tokenizer


def check_model_dir(model_dir):
    """Raise a one-line ModelDirError / CheckpointError unless the directory would load: every file present, both
    checkpoints opened and their tensor names and shapes checked against the manifest (or the release preset the
    folder claims), the text encoder's config and safetensors headers read, mean/std read. Reads no decoder weight
    (memory-mapped) and loads no text encoder: seconds even for the 7B. Returns the ModelConfig."""
    cfg = load_config(model_dir)
    _check_files(cfg)
    load_normalization(cfg)
    shape, _ = _check_decoder(cfg)
    _check_tokenizer(cfg, shape)
    return cfg


def load_model(model_dir, device="auto", dtype=None, quant=None, double_quant=False, progress=None):
    """Load everything; `progress(phase)` is called before each part. Raises ModelDirError / CheckpointError.
    The decoder checkpoint is checked before the text encoder is loaded, so a broken file fails at once."""
    say = progress or (lambda phase: None)
    cfg = load_config(model_dir)
    _check_files(cfg)
    dev = resolve_device(device)
    torch_dtype, quant, notes = resolve_precision(dev, dtype, quant)
    mean, std = load_normalization(cfg)
    shape, reference_state = _check_decoder(cfg)

    say("loading text encoder")
    text_encoder = TextEncoder(cfg.path(cfg.text_encoder.dir), dev, text_encoder_dtype(dev, torch_dtype),
                               cfg.text_encoder.max_tokens)

    say("loading motion decoder")
    state = convert_state_dict(reference_state, shape)
    del reference_state
    with torch.device("meta"):
        decoder = MotionDecoder(shape)
    materialize(decoder, state, dev, torch_dtype, quant, double_quant=double_quant)
    del state
    # Non-persistent RoPE frequencies were created on the meta device: rebuild them where the model lives.
    decoder.llama.rotary_emb = type(decoder.llama.rotary_emb)(decoder.llama.config).to(dev)
    decoder.eval()
    if packs_weights(dev, torch_dtype, quant):
        pack_decoder(decoder)

    say("loading motion tokenizer")
    tokenizer = _check_tokenizer(cfg, shape).to(dev)
    return MotionMillion(cfg, text_encoder, decoder, tokenizer, mean, std, dev, torch_dtype, quant, notes)
