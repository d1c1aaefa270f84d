"""The static model-file scanner: is it safe to load this checkpoint?

    from models.scanner import scan_path
    result = scan_path("pytorch_model.bin")
    result.verdict   # "safe" | "unsafe" | "unknown"

`safe` means: every global the file's pickles could import is on an explicit allow-list of
weight-rebuilding callables, the archive reads the same to every reader, and the file's
structure is exactly what torch.save (or numpy, or safetensors) writes. `unsafe` means a known
code-execution or file/network gadget is imported. Everything else is `unknown`. Nothing from
the file is ever imported or executed; tensor data is never read. Pure Python (no Django); torch
is imported only to compare with PyTorch's own zip reader.
"""

from models.scanner.result import Finding, ScanResult, TensorMeta
from models.scanner.scan import scan_path, scan_stream

__all__ = ["scan_path", "scan_stream", "ScanResult", "Finding", "TensorMeta"]
