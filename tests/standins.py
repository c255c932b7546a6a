"""Release-shaped stand-ins of the tiny conformance model: its real weights, saved as the reference's training
scripts save the release checkpoints and packed as copies of them circulate.

- train_t2m_llama.py saves {'trans', 'optimizer', 'scheduler', 'nb_iter', 'actual_nb_iter'}; the 7B was trained with
  DeepSpeed ZeRO-2 under accelerate, so 'optimizer' pickles DeepSpeed's own objects next to fp32 partitions and Adam
  moments. The fake `deepspeed` modules that make those objects exist only while save_t2m_training() saves.
- train_tokenizer.py saves {'net', 'optimizer', 'scheduler', 'nb_iter'} with a plain AdamW and MultiStepLR.
"""
import contextlib
import dataclasses
import enum
import os
import shutil
import sys
import types
import zipfile
from collections import OrderedDict

from conftest import CONFORMANCE

# torch is imported where it is used: test_install.py imports this module, and its tests marked bpy also run under
# the bpy-only LTS environments (.ci/run), which have no torch.

TINY = CONFORMANCE / "model"
# The tiny model as a release "size": tests that run the installer's release path in-process put it in PRESETS.
TINY_PRESET = dict(n_layer=2, n_head=4, n_embd=64, clip_dim=64)


def tiny_blob(name):
    import torch
    return torch.load(TINY / name, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def fake_deepspeed():
    """deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler, deepspeed.runtime.zero.config.ZeroStageEnum and
    deepspeed.utils.tensor_fragment.fragment_address, importable only inside this block."""
    names = ["deepspeed", "deepspeed.runtime", "deepspeed.runtime.fp16", "deepspeed.runtime.fp16.loss_scaler",
             "deepspeed.runtime.zero", "deepspeed.runtime.zero.config", "deepspeed.utils",
             "deepspeed.utils.tensor_fragment"]
    mods = {n: types.ModuleType(n) for n in names}

    class DynamicLossScaler:
        def __init__(self):
            self.cur_scale, self.cur_iter, self.scale_factor, self.scale_window = 65536.0, 1200, 2.0, 1000

    class ZeroStageEnum(int, enum.Enum):
        disabled, optimizer_states, gradients, weights = 0, 1, 2, 3

    @dataclasses.dataclass
    class fragment_address:  # noqa: N801 (DeepSpeed's own name)
        numel: int
        start: int

    for mod, cls in (("deepspeed.runtime.fp16.loss_scaler", DynamicLossScaler),
                     ("deepspeed.runtime.zero.config", ZeroStageEnum),
                     ("deepspeed.utils.tensor_fragment", fragment_address)):
        cls.__module__, cls.__qualname__ = mod, cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def save_t2m_training(path, optimizer_numel=None):
    """The tiny decoder as train_t2m_llama.py saves it under DeepSpeed ZeRO-2: `optimizer_numel` fp32 values in each
    of the fp32 partition and the two Adam moments (default: as many as the weights have)."""
    import torch
    trans = tiny_blob("t2m.pth")["trans"]
    n = optimizer_numel or sum(v.numel() for v in trans.values())
    with fake_deepspeed() as ds:
        scaler = ds["deepspeed.runtime.fp16.loss_scaler"].DynamicLossScaler()
        stage = ds["deepspeed.runtime.zero.config"].ZeroStageEnum.gradients
        frag = ds["deepspeed.utils.tensor_fragment"].fragment_address
        start, mapping = 0, OrderedDict()
        for k, v in trans.items():
            mapping[k] = frag(numel=v.numel(), start=start)
            start += v.numel()
        optimizer = {
            "loss_scaler": scaler, "dynamic_loss_scale": True, "overflow": False, "clip_grad": 1.0,
            "base_optimizer_state": {"state": {0: {"step": torch.tensor(1200.0), "exp_avg": torch.ones(n),
                                                   "exp_avg_sq": torch.ones(n)}},
                                     "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.99), "params": [0]}]},
            "single_partition_of_fp32_groups": [torch.ones(n)], "zero_stage": stage, "group_paddings": [0],
            "partition_count": [1], "ds_version": "0.14.4", "param_slice_mappings": [mapping],
        }
        torch.save({"trans": trans, "optimizer": optimizer,
                    "scheduler": {"base_lrs": [2e-4], "last_epoch": 1200, "_step_count": 1201},
                    "nb_iter": 1200, "actual_nb_iter": 1200}, path)
    return path


def save_tokenizer_training(path):
    """The tiny tokenizer as train_tokenizer.py saves it: with a real AdamW's and MultiStepLR's state."""
    import torch
    net = tiny_blob("tokenizer.pth")["net"]
    params = [torch.nn.Parameter(v.float().clone()) for v in list(net.values())[:3]]
    opt = torch.optim.AdamW(params, lr=2e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[200000, 400000], gamma=0.05)
    sum(p.sum() for p in params).backward()
    opt.step()
    sched.step()
    torch.save({"net": net, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "nb_iter": 6000000}, path)
    return path


def zip_archive(path, members):
    """A plain zip archive (not torch's format): {name inside: file to store}."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for inner, src in members.items():
            z.write(src, inner)
    return path


def hf_cache_text_encoder(checkpoints, snapshot="7d6315df2c2fb742f0f5b556879d730926ca9001"):
    """The tiny T5 as the reference keeps flan-t5-xl: checkpoints/models--google--flan-t5-xl/snapshots/<hash>/, each
    file a link into ../../blobs/, as huggingface_hub's cache lays it out."""
    repo = checkpoints / "models--google--flan-t5-xl"
    snap, blobs = repo / "snapshots" / snapshot, repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir(parents=True)
    for f in sorted((TINY / "text_encoder").iterdir()):
        blob = blobs / f"{abs(hash(f.name)):x}"
        shutil.copy(f, blob)
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    return snap


def reference_layout(root, t2m_name="motionmillion_7B_all.pth", tokenizer_name="fsq_net_6000000.pth"):
    """A MotionMillion-Codes checkout after its download scripts ran: checkpoints/pretrained_models/, the HF-cache
    flan-t5-xl, dataset/MotionMillion/mean_std/vector_272/, and a decoy 263-dim mean/std of another dataset."""
    pretrained = root / "checkpoints" / "pretrained_models"
    pretrained.mkdir(parents=True)
    save_t2m_training(pretrained / t2m_name)
    save_tokenizer_training(pretrained / tokenizer_name)
    hf_cache_text_encoder(root / "checkpoints")
    stats = root / "dataset" / "MotionMillion" / "mean_std" / "vector_272"
    stats.mkdir(parents=True)
    for name in ("mean.npy", "std.npy"):
        shutil.copy(TINY / name, stats / name)
    decoy = root / "dataset" / "HumanML3D"
    decoy.mkdir(parents=True)
    import numpy as np
    np.save(decoy / "mean.npy", np.zeros(263))
    np.save(decoy / "std.npy", np.ones(263))
    return root


def model_dir_config(folder, **files):
    """A config.json for `folder` in the tiny model's form, its files named as given (tokenizer=, t2m=,
    text_encoder=, mean=, std=)."""
    import json
    cfg = json.loads((TINY / "config.json").read_text())
    cfg["tokenizer"]["file"] = files.get("tokenizer", cfg["tokenizer"]["file"])
    cfg["t2m"]["file"] = files.get("t2m", cfg["t2m"]["file"])
    cfg["text_encoder"]["dir"] = files.get("text_encoder", cfg["text_encoder"]["dir"])
    cfg["normalization"] = {"mean": files.get("mean", "mean.npy"), "std": files.get("std", "std.npy")}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    return folder
