"""Files a run writes: atomic JSON, JSON-lines metrics, checkpoints, and the environment record; and the
readers of every file the pipeline reads (JSON, JSON lines, torch files, YAML, Parquet, .npz).

A reader turns a damaged or truncated file (a full disk, a killed copy, a bad edit) into a
vit.errors.DataError that names the file, the parser's own short reason and the fix (`redo` for files the
workflow writes), where the parser alone would print a traceback that names neither. A missing file is
named the same way. `expect` checks the parsed value's type where a reader needs one (cheap; a file of
another kind given in its place fails here, not with a KeyError far away).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from vit.errors import DataError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file next to `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_parquet(path: str | Path, df) -> None:
    """A DataFrame as Parquet, atomically (a killed job leaves the old file or none, never half of one)."""
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


# ----------------------------------------------------------------------------- reading, with a clear error
# results/<folder>/ -> what writes the files there (workflow/rules/*.smk), for the fix of a damaged one
WRITERS = {"data": "prepare rule (pseudo_label for a Noisy Student set)", "pretrain": "pretrain rule",
           "released": "import_weights rule", "finetune": "finetune rule", "ablation": "finetune_posemb rule",
           "hyperrule": "finetune_hyperrule rule", "fewshot": "fewshot rule", "inspect": "inspect rule",
           "eval": "evaluate rule", "compute": "account rule",
           "vtab": "vtab_sweep, vtab_select or vtab_final rule", "bench": "bench rule"}
FIX = "delete it and run the step that wrote it again"  # where no better fix is known


def redo(path: str | Path, by: str = "", delete: str | Path = "") -> str:
    """The fix for a damaged file that the workflow writes: delete it (or the folder `delete`) and run the
    workflow again, which rewrites what is missing. `by` names the rule; by default it follows from the
    path's folder under results/ (`WRITERS`)."""
    parts = Path(path).parts
    folder = parts[parts.index("results") + 1] if "results" in parts[:-1] else ""
    by = by or WRITERS.get(folder, "")
    return (f"delete {delete or path} and run `snakemake --cores all` again: "
            f"{f'the {by}' if by else 'the rule that wrote it'} rewrites it")


def _reason(e: BaseException, path: str | Path) -> str:
    """The parser's own message, first line only, the file by its name alone (the error names its path) and
    cut short: the error stays one line. YAML's first line lacks the place: it is added."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        text = f"{getattr(e, 'problem', None) or text}, line {mark.line + 1}, column {mark.column + 1}"
    text = text.replace(str(path), Path(path).name)
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def reading(path: str | Path, fix: str, errors: tuple):
    """Turn what a parser raises for a damaged `path` (`errors`) into a DataError that names the file, the
    parser's reason and `fix`; a missing file likewise. A file that cannot be opened (permissions, a
    folder) is not damaged: its OSError, which names it, passes."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {fix}") from None
    except (PermissionError, IsADirectoryError, DataError):  # DataError: `expect`'s, already clear
        raise
    except errors as e:
        raise DataError(f"{path}: damaged or truncated ({_reason(e, path)}); {fix}") from None


def expect(path: str | Path, obj, kind: type | None, fix: str, keys: tuple = ()):
    """`obj` read from `path`, checked to be a `kind` (None: anything) that has `keys`."""
    if kind is not None and not isinstance(obj, kind):
        raise DataError(f"{path}: damaged or not the file expected (holds a {type(obj).__name__}, expected a "
                        f"{kind.__name__}); {fix}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{path}: damaged or not the file expected (no {', '.join(map(repr, missing))}); {fix}")
    return obj


def read_json(path: str | Path, fix: str = FIX, kind: type | None = None, keys: tuple = ()):
    with reading(path, fix, (ValueError,)):  # JSONDecodeError; UnicodeDecodeError for binary damage
        return expect(path, json.loads(Path(path).read_text()), kind, fix, keys)


def read_jsonl(path: str | Path, fix: str = FIX, partial_last: bool = False) -> list[dict]:
    """One dict per line (MetricWriter's format). `partial_last`: drop a last line that was cut short (no
    newline, not JSON), which is what an appending writer killed mid-write (kill -9, a lost node) leaves;
    damage anywhere else is an error, naming the line."""
    with reading(path, fix, (ValueError,)):
        text = Path(path).read_text()
    lines = text.splitlines()
    if partial_last and lines and not text.endswith("\n") and not _parses(lines[-1]):
        lines.pop()
    records = []
    for n, line in enumerate(lines, 1):
        with reading(f"{path}, line {n}", fix, (ValueError,)):
            records.append(expect(f"{path}, line {n}", json.loads(line), dict, fix))
    return records


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def load_torch(path: str | Path, fix: str = FIX, kind: type | None = dict, **kw):
    """torch.load of a file this project wrote (pickled, so weights_only=False), onto the CPU. A damaged
    file raises whatever the zip reader or unpickler meets: OSError and RuntimeError for a truncated archive
    (torch 2.14: "[Errno 22] Invalid argument"; "PytorchStreamReader failed ..."), UnpicklingError, EOFError,
    ValueError and more for garbage; all of them mean the same to the user."""
    import pickle
    import zipfile

    import torch

    errors = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, zipfile.BadZipFile,
              KeyError, IndexError, TypeError, AttributeError, ImportError)
    with reading(path, fix, errors):
        return expect(path, torch.load(path, map_location="cpu", weights_only=False, **kw), kind, fix)


def read_yaml(path: str | Path, fix: str = FIX, kind: type | None = dict, keys: tuple = ()):
    """YAML, e.g. a config. YAML cut short at a line boundary often still parses: `keys` that must be there
    catch much of that."""
    import yaml

    with reading(path, fix, (yaml.YAMLError, ValueError)):  # ValueError: UnicodeDecodeError
        return expect(path, yaml.safe_load(Path(path).read_text()), kind, fix, keys)


def read_parquet(path: str | Path, fix: str = FIX):
    """A DataFrame; pyarrow raises ArrowInvalid (a ValueError) for a cut footer or garbage."""
    import pandas as pd

    with reading(path, fix, (ValueError, OSError)):
        return pd.read_parquet(path)


def read_benchmark(path: str | Path):
    """The last record (a pandas Series) of a Snakemake benchmark file, which Snakemake writes as the job it
    times ends (`benchmark:` in workflow/rules): deleting it makes Snakemake run that job again."""
    import pandas as pd

    fix = (f"delete it and run `snakemake --cores all` again: Snakemake reruns the {Path(path).parent.name} "
           f"job it times, which rewrites it")
    with reading(path, fix, (ValueError, IndexError)):  # pandas' ParserError, EmptyDataError; no rows
        lines = Path(path).read_text().splitlines()
        if len(lines) < 2 or len(lines[-1].split("\t")) != len(lines[0].split("\t")):
            raise ValueError("no complete record")  # pandas would fill a cut record's fields with NaN
        return expect(path, pd.read_csv(path, sep="\t").iloc[-1], None, fix, keys=("s",))


def read_npz(path: str | Path, fix: str = FIX) -> dict:
    """Every array of an .npz, read now (np.load reads members lazily: damage would surface later)."""
    import zipfile

    import numpy as np

    with reading(path, fix, (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError)):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}


def save_torch(path: str | Path, obj) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


class MetricWriter:
    """One JSON object per line: {"step", "split", ...}; appends, so a resumed run keeps its history."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a")

    def write(self, **record) -> None:
        record.setdefault("time", round(time.time(), 3))
        self._f.write(json.dumps(record, default=float) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def git_commit() -> str:
    """The code's commit, "-dirty" if tracked files differ from it. reports/ is left out: it holds the
    workflow's generated outputs, which Snakemake deletes and the report rewrites while it runs."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)reports"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name and widest vector units (machines of one kind differ, and a VM's model name
    may be generic: speeds are compared only between runs on the same CPU)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    # the units that decide speed and the step's form (vit.train.forms: bf16 where AVX-512 BF16 or AMX exist)
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if u in flags]
    return f"{name} ({', '.join(units)})" if units else name


def environment() -> dict:
    """What produced a number: package versions, machine, device, code version."""
    import numpy
    import timm
    import torch
    import torchvision

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "git_commit": git_commit(),
    }
    return env
