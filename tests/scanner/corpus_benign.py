"""The benign half of the corpus: checkpoints the way real training code writes them.

Each builder writes its file(s) into `folder` and returns (file name, loader, note). Files are
small (kilobytes) but structurally real: torch.save in zip and legacy formats, optimizer
states, tied weights, views, every dtype torch.save writes, sharded Hugging Face layouts.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable

BENIGN: list[tuple[str, Callable[[Path], tuple[str, str, str]]]] = []


def benign(name: str):
    def register(fn):
        BENIGN.append((name, fn))
        return fn
    return register


def _torch():
    import torch
    return torch


def mlp(seed: int = 0):
    torch = _torch()
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def all_dtypes() -> OrderedDict:
    torch = _torch()
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 4, generator=g)
    out = OrderedDict()
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                  torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
                  torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16,
                  torch.uint32):
        out[str(dtype).split(".")[1]] = (base * 10).to(dtype)
    return out


def optimizer_state(model):
    torch = _torch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    return optimizer.state_dict()


@benign("mlp-state-dict-zip")
def _(folder):
    _torch().save(mlp().state_dict(), folder / "mlp.pt")
    return "mlp.pt", "torch", "nn.Sequential state_dict (OrderedDict with _metadata via BUILD)"


@benign("mlp-state-dict-legacy")
def _(folder):
    _torch().save(mlp().state_dict(), folder / "mlp_legacy.pt",
                  _use_new_zipfile_serialization=False)
    return "mlp_legacy.pt", "torch", "legacy (non-zip) torch.save format"


@benign("every-dtype-zip")
def _(folder):
    _torch().save(all_dtypes(), folder / "dtypes.pt")
    return "dtypes.pt", "torch", "15 dtypes incl. bf16, float8, uint16 (rebuild_tensor_v3)"


@benign("every-dtype-legacy")
def _(folder):
    torch = _torch()
    classic = OrderedDict((k, v) for k, v in all_dtypes().items()
                          if not k.startswith(("float8", "uint16", "uint32")))
    torch.save(classic, folder / "dtypes_legacy.pt", _use_new_zipfile_serialization=False)
    return "dtypes_legacy.pt", "torch", "classic dtypes in the legacy format"


@benign("tied-weights")
def _(folder):
    torch = _torch()
    embed = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    state = OrderedDict([("embed.weight", embed.weight.detach()),
                         ("head.weight", head.weight.detach()),
                         ("head.weight_view", embed.weight.detach()[2:5])])
    torch.save(state, folder / "tied.pt")
    return "tied.pt", "torch", "two names share one storage, plus a view into it"


@benign("empty-and-scalar-tensors")
def _(folder):
    torch = _torch()
    torch.save({"empty": torch.zeros(0), "empty2d": torch.zeros(0, 3), "scalar": torch.tensor(3.5),
                "int_scalar": torch.tensor(7)}, folder / "empty.pt")
    return "empty.pt", "torch", "zero-element and zero-dimensional tensors"


@benign("views-and-strides")
def _(folder):
    torch = _torch()
    base = torch.arange(24.0).reshape(4, 6)
    torch.save({"t": base.t(), "slice": base[1:3, 2:], "expand": torch.ones(1, 4).expand(3, 4),
                "step": base[:, ::2]}, folder / "views.pt")
    return "views.pt", "torch", "transposed, sliced, stride-0 and strided views"


@benign("adam-optimizer-state")
def _(folder):
    _torch().save(optimizer_state(mlp()), folder / "optimizer.pt")
    return "optimizer.pt", "torch", "Adam state dict: int keys, tuples, None, bools, floats"


@benign("training-checkpoint")
def _(folder):
    model = mlp()
    _torch().save({"model": model.state_dict(), "optimizer": optimizer_state(model), "epoch": 3,
                   "global_step": 1000, "best_loss": 0.25,
                   "config": {"name": "mlp", "layers": [8, 16, 4], "dropout": None}},
                  folder / "checkpoint.ckpt")
    return "checkpoint.ckpt", "torch", "nested training checkpoint (.ckpt)"


@benign("training-checkpoint-legacy")
def _(folder):
    model = mlp(1)
    _torch().save({"state_dict": model.state_dict(), "optimizer": optimizer_state(model)},
                  folder / "checkpoint_legacy.pth", _use_new_zipfile_serialization=False)
    return "checkpoint_legacy.pth", "torch", "nested checkpoint, legacy format (.pth)"


@benign("batchnorm-buffers")
def _(folder):
    torch = _torch()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save(net.state_dict(), folder / "batchnorm.pth")
    return "batchnorm.pth", "torch", "buffers incl. int64 num_batches_tracked scalar"


@benign("parameter-objects")
def _(folder):
    torch = _torch()
    torch.save(dict(mlp(2).named_parameters()), folder / "parameters.pt")
    return "parameters.pt", "torch", "nn.Parameter objects (_rebuild_parameter)"


@benign("many-tensors")
def _(folder):
    torch = _torch()
    torch.save({f"layer.{i}.weight": torch.full((2,), float(i)) for i in range(600)},
               folder / "many.pt")
    return "many.pt", "torch", "600 tensors: memo indices past 255 (LONG_BINPUT)"


@benign("lists-and-int-keys")
def _(folder):
    torch = _torch()
    torch.save({"layers": [torch.ones(2), torch.zeros(3)], 1: torch.eye(2),
                "pair": (torch.ones(1),)}, folder / "lists.pt")
    return "lists.pt", "torch", "tensors inside lists, tuples and int-keyed dicts"


@benign("quantized-tensor")
def _(folder):
    torch = _torch()
    q = torch.quantize_per_tensor(torch.tensor([0.5, 1.0, 2.0]), 0.1, 0, torch.qint8)
    torch.save({"q": q}, folder / "quantized.pt")
    return "quantized.pt", "torch", "per-tensor qint8 (_rebuild_qtensor)"


@benign("sparse-coo-tensor")
def _(folder):
    torch = _torch()
    sparse = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, 2.0]),
                                     (2, 2))
    torch.save({"sparse": sparse}, folder / "sparse.pt")
    return "sparse.pt", "torch", "sparse COO tensor (_rebuild_sparse_tensor, _get_layout)"


@benign("bytesio-archive")
def _(folder):
    import io
    buffer = io.BytesIO()
    _torch().save(mlp(3).state_dict(), buffer)
    (folder / "from_buffer.bin").write_bytes(buffer.getvalue())
    return "from_buffer.bin", "torch", "saved to a buffer: archive folder `archive/`"


@benign("no-byteorder-record")
def _(folder):
    _torch().save(mlp(4).state_dict(), folder / "no_byteorder.pt", _disable_byteorder_record=True)
    return "no_byteorder.pt", "torch", "archive without the byteorder member"


@benign("unicode-archive-name")
def _(folder):
    _torch().save(mlp(5).state_dict(), folder / "mödel.pt")
    return "mödel.pt", "torch", "non-ASCII archive folder name (UTF-8 flag)"


@benign("numpy-in-checkpoint")
def _(folder):
    import numpy
    torch = _torch()
    torch.save({"w": torch.ones(2), "mean": numpy.array([0.5, 0.25], dtype=numpy.float32),
                "seed": numpy.int64(3)}, folder / "with_numpy.pt")
    return "with_numpy.pt", "torch", "numpy array and scalar (weights_only needs safe_globals)"


@benign("pickle-protocol-4")
def _(folder):
    _torch().save(mlp(6).state_dict(), folder / "protocol4.pt", pickle_protocol=4)
    return "protocol4.pt", "torch", "torch.save(pickle_protocol=4): FRAME, MEMOIZE"


@benign("gpt2-pytorch-model-bin")
def _(folder):
    """A tiny GPT-2 in the layout transformers 4.x wrote for save_pretrained(
    safe_serialization=False): torch.save(state_dict) to pytorch_model.bin plus config.json.
    (transformers 5 only writes safetensors; it ignores safe_serialization=False.)"""
    model = tiny_gpt2()
    target = folder / "gpt2"
    target.mkdir(exist_ok=True)
    model.config.to_json_file(target / "config.json")
    _torch().save(model.state_dict(), target / "pytorch_model.bin")
    return "gpt2/pytorch_model.bin", "torch", "tiny GPT-2 (tied lm_head / wte)"


@functools.lru_cache(maxsize=1)
def tiny_gpt2():
    import transformers
    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=64, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    _torch().manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


def write_sharded(target: Path, state: dict, shards: int) -> list[str]:
    """pytorch_model-0000i-of-0000n.bin files and pytorch_model.bin.index.json, as
    transformers 4.x wrote them."""
    target.mkdir(parents=True, exist_ok=True)
    names = list(state)
    weight_map, files = {}, []
    for i in range(shards):
        shard = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = OrderedDict((n, state[n]) for n in names[i::shards])
        _torch().save(part, target / shard)
        weight_map.update({n: shard for n in part})
        files.append(shard)
    total = sum(t.numel() * t.element_size() for t in state.values())
    (target / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return files


@benign("sharded-shard-1")
def _(folder):
    model = tiny_gpt2()
    write_sharded(folder / "sharded", model.state_dict(), 2)
    model.config.to_json_file(folder / "sharded" / "config.json")
    return "sharded/pytorch_model-00001-of-00002.bin", "torch", "HF-style shard 1 of 2"


@benign("sharded-shard-2")
def _(folder):
    return "sharded/pytorch_model-00002-of-00002.bin", "torch", "HF-style shard 2 of 2"


@benign("numpy-npy")
def _(folder):
    import numpy
    numpy.save(folder / "embedding.npy", numpy.arange(12, dtype=numpy.float32).reshape(3, 4))
    return "embedding.npy", "numpy", "plain float32 .npy"


@benign("numpy-npz")
def _(folder):
    import numpy
    numpy.savez_compressed(folder / "arrays.npz", a=numpy.arange(3), b=numpy.ones((2, 2)))
    return "arrays.npz", "numpy", "compressed .npz of plain arrays"


@benign("safetensors-file")
def _(folder):
    from safetensors.torch import save_file
    torch = _torch()
    save_file({"w": torch.ones(2, 2), "b": torch.zeros(2, dtype=torch.bfloat16)},
              str(folder / "model.safetensors"))
    return "model.safetensors", "safetensors", "safetensors: no code at all"
