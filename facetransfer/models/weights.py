"""Pretrained weights that work offline: torch's hub cache, explicit import, hash checks.

Pretrained files live where torchvision puts them, ``$TORCH_HOME/hub/checkpoints`` (docs/getting-started.md). A
missing file is downloaded once; without network the error names the file, the cache folder and the import command.
``facetransfer weights import FILE`` checks a file against its published hash and copies it into the cache::

    >>> find_known_file("mobilenet_v2-b0353104.pth").source
    'torchvision:mobilenet_v2.IMAGENET1K_V1'
"""

from __future__ import annotations

import importlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import torch

from ..errors import ConfigError, WeightsError
from ..io.atomic import atomic_write
from ..io.checkpoint import checked, load_errors
from ..registry import Registry
from .verified_cache import name_hash, remember_verified, sha256_of, verify_cached_file


@dataclass(frozen=True)
class KnownWeightsFile:
    """A weights file facetransfer can verify: its canonical name and expected hash."""

    filename: str
    url: str | None
    sha256: str  # a full digest, or the prefix torchvision puts in its file names
    source: str


_EXTRA_FILES: dict[str, KnownWeightsFile] = {}


def register_weights_file(filename: str, sha256: str, source: str, url: str | None = None) -> None:
    """Make a non-torchvision weights file importable with ``facetransfer weights import``."""
    _EXTRA_FILES[filename] = KnownWeightsFile(filename, url, sha256.lower(), source)


def hub_checkpoint_dir() -> Path:
    """The folder torchvision downloads weights to (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@cache
def _torchvision_files() -> dict[str, KnownWeightsFile]:
    files: dict[str, KnownWeightsFile] = {}
    from torchvision.models import get_model_weights, list_models

    for model in list_models():
        try:
            enum = get_model_weights(model)
        except Exception:  # models without a weights enum
            continue
        for w in enum:
            name = os.path.basename(w.url)
            if prefix := name_hash(name):  # torchvision's file names carry their hash
                files.setdefault(name, KnownWeightsFile(name, w.url, prefix, f"torchvision:{model}.{w.name}"))
    return files


def _load_builtin_registrars() -> None:
    """Import the modules whose import registers weights files and importers (before a lookup or an import)."""
    for module in ("facetransfer.models.face_api_weights", "facetransfer.detection.mtcnn_weights"):
        importlib.import_module(module)


def known_files() -> dict[str, KnownWeightsFile]:
    _load_builtin_registrars()
    return {**_torchvision_files(), **_EXTRA_FILES}


def find_known_file(filename: str) -> KnownWeightsFile | None:
    return known_files().get(filename)


def resolve_torchvision_weights(model: str, weights: str):
    """``("mobilenet_v2", "IMAGENET1K_V1" | "DEFAULT")`` -> torchvision weights enum member."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(model)
    try:
        return enum[weights.split(".")[-1]]  # DEFAULT is an alias member of every weights enum
    except KeyError:
        known = ["DEFAULT", *(w.name for w in enum)]
        raise ConfigError(f"unknown weights {weights!r} for {model}; known: {', '.join(known)}") from None


def cached_file(filename: str, url: str | None = None, how_to_get: str | None = None) -> Path:
    """Path of ``filename`` in the hub cache, downloading it from ``url`` when missing.

    Raises :class:`WeightsError` naming the file, the cache path and how to import it (``how_to_get``, by
    default: copy it from a machine with network) when the file is absent and cannot be downloaded, or
    when it does not match its published hash (checked at every load, see :mod:`.verified_cache`).
    """
    path = hub_checkpoint_dir() / filename
    if path.is_file():
        entry = None if name_hash(filename) else find_known_file(filename)  # torchvision's names carry their hash
        return verify_cached_file(path, entry.sha256 if entry else None)
    offline = os.environ.get("FACETRANSFER_OFFLINE", "") not in ("", "0")
    reason = "FACETRANSFER_OFFLINE is set" if offline else "no download address is known"
    if url and not offline:
        try:
            _download(url, path)
            return path
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            reason = f"download from {url} failed: {err}"
    how_to_get = how_to_get or (
        f"copy {filename} from a machine with network (it is downloaded to its "
        f"$TORCH_HOME/hub/checkpoints) and run: facetransfer weights import /path/to/{filename}"
    )
    raise WeightsError(
        f"pretrained weights file {filename} is not in the cache {path.parent} and {reason}; {how_to_get}"
    )


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
        pass  # fail fast when offline instead of hanging in the download
    dest.parent.mkdir(parents=True, exist_ok=True)  # torch downloads to a partial file and renames it when whole
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=name_hash(dest.name))


def import_weights_file(file: str | os.PathLike, force: bool = False) -> Path:
    """Verify ``file`` against the published hash and copy it into the hub cache.

    The file is identified by its name (``mobilenet_v2-b0353104.pth``) or, when it
    was renamed, by its hash. Returns the cached path.
    """
    src = Path(file)
    if not src.is_file():
        raise WeightsError(f"weights file {src} does not exist")
    digest = sha256_of(src)
    known = known_files()
    entry = known.get(src.name)
    if entry is None:
        entry = next((k for k in known.values() if digest.startswith(k.sha256)), None)
        if entry is None:
            raise WeightsError(
                f"{src} (sha256 {digest[:16]}...) is not a known weights file; facetransfer verifies "
                "torchvision's published files and those registered with register_weights_file()"
            )
    elif not digest.startswith(entry.sha256):
        raise WeightsError(
            f"{src} has the wrong hash for {entry.filename} ({entry.source}): sha256 starts with "
            f"{digest[: len(entry.sha256)]}, expected {entry.sha256}; the file is corrupt or a different model"
        )

    def copy(fh: BinaryIO) -> None:
        with open(src, "rb") as fin:
            shutil.copyfileobj(fin, fh, 1 << 20)

    return cache_verified(entry.filename, digest, copy, force)


def cache_verified(filename: str, sha256: str, write: Callable[[BinaryIO], object], force: bool = False) -> Path:
    """Put a verified file into the hub cache, written by ``write(fh)`` atomically (a killed copy never leaves a
    torn file) unless an identical copy is there (``force``: rewrite it), and remember it as verified."""
    dest = hub_checkpoint_dir() / filename
    if force or not (dest.is_file() and sha256_of(dest) == sha256):
        with atomic_write(dest, "wb", what="weights file") as fh:
            write(fh)
    remember_verified(dest, sha256)
    return dest


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``); Lightning checkpoints give their ``state_dict``
    (checked against their content digest when they carry one)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    with load_errors(path, "weights file"):
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        obj = checked(dict(obj), path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return dict(obj)


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, what: str, ignore_prefixes=()) -> None:
    """``load_state_dict`` that reports a mismatch as one clear :class:`WeightsError`."""
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(tuple(ignore_prefixes))}
    problems = {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "wrong shape": sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape),
    }
    parts = [f"{label} {len(keys)} key(s) e.g. {keys[:3]}" for label, keys in problems.items() if keys]
    if parts:
        raise WeightsError(f"{what} does not fit: " + "; ".join(parts))
    module.load_state_dict(state, strict=False)


def load_backbone_weights(
    backbone: torch.nn.Module, path: str | os.PathLike, name: str, source_net: torch.nn.Module | None = None,
    source_head: tuple[str, ...] = (),
) -> None:
    """Load a local state dict (``weights_path``) into ``backbone``: in its layout (``stages.…``; a
    FaceClassifier checkpoint's ``backbone.…``) or, given ``source_net`` (the network the stages were taken
    from), in that network's own layout. Head keys (``head.``, ``source_head``) are ignored: the head is new."""
    state = load_state_dict_file(path)
    if any(k.startswith("backbone.") for k in state):  # a FaceClassifier checkpoint
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    what = f"weights file {path} for backbone {name}"
    if source_net is None or any(k.startswith("stages.") for k in state):
        load_into(backbone, state, what=what, ignore_prefixes=("head.",))
    else:
        load_into(source_net, state, what=what, ignore_prefixes=source_head)


class WeightsImporter(NamedTuple):
    """Teaches ``facetransfer weights import`` a kind of file (e.g. face-api's tfjs tarball for ``dlib_resnet``):
    ``accepts(path)`` picks the files, ``load(path, force)`` converts, verifies and caches one, returning its path.
    Another package adds one as a ``WeightsImporter`` in the ``facetransfer.weights_importers`` entry-point group."""

    accepts: Callable[[Path], bool]
    load: Callable[[Path, bool], Path]


#: importers by name, tried in registration order; the built-ins register when their module is imported
WEIGHTS_IMPORTERS: Registry[WeightsImporter] = Registry(
    "weights importer", "facetransfer.weights_importers", WeightsImporter, ordered=True
)


def register_weights_importer(accepts: Callable[[Path], bool], importer: Callable[[Path, bool], Path]) -> None:
    """Add ``WeightsImporter(accepts, importer)`` under the importer's name."""
    WEIGHTS_IMPORTERS.register(importer.__name__)(WeightsImporter(accepts, importer))


def import_any(file: str | os.PathLike, force: bool = False) -> Path:
    """Import with the first registered importer that accepts ``file``, else as a torchvision file."""
    path = Path(file)
    _load_builtin_registrars()
    for name in WEIGHTS_IMPORTERS:
        accepts, load = WEIGHTS_IMPORTERS.get(name)
        if accepts(path):
            return load(path, force)
    return import_weights_file(path, force=force)
