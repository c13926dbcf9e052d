"""Download LFW from its site: resumable (HTTP Range), verified (published MD5s, ``lfw-names.txt``) and
atomic (an image folder that exists is complete); see docs/alignment.md::

    >>> download_lfw("data/lfw", "deepfunneled")  # doctest: +SKIP
    PosixPath('data/lfw/lfw-deepfunneled')
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConfigError, DataError, listing
from ..models.verified_cache import file_digest
from .lfw import ARCHIVES, NAMES_FILE, VARIANTS, read_name_counts

#: where the LFW project serves its files
BASE_URL = "https://umass-vis-lfw.github.io/"
#: published MD5 of each protocol file (as torchvision's LFW dataset checks them)
PROTOCOL_MD5: dict[str, str] = {
    "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
    "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
    "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
    "peopleDevTrain.txt": "54eaac34beb6d042ed3a7d883e247a21",
    "peopleDevTest.txt": "e4bf5be0a43b5dcd9dc5ccfcb8fb19c5",
    "people.txt": "450f0863dd89e85e73936a6d71a3474b",
    "lfw-names.txt": "a6d0a479bd074669f656265a6e693f6d",
}
#: every file's address with the default base URL
LFW_URLS: dict[str, str] = {name: BASE_URL + name for name in [*ARCHIVES.values(), *PROTOCOL_MD5]}
DOWNLOAD_DIR = ".lfw-download"
_CHUNK = 1 << 16


class SiteUnreachable(DataError):
    """The site did not answer (no network, a proxy, a firewall)."""


def md5_of(path: Path) -> str:
    return file_digest(path, "md5")


def fetch(url: str, dest: Path, progress: bool = False, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest``, continuing a ``dest.part`` left by an interrupted run.

    The partial file is kept when the transfer stops, so calling again resumes it with an
    HTTP Range request (a server that ignores Range sends the whole file again).
    """
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the partial file is complete
            os.replace(part, dest)
            return dest
        raise DataError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise SiteUnreachable(f"cannot reach {urllib.parse.urlsplit(url).netloc} ({reason})") from None
    with response:
        # resumed: a 206 answer starting where the partial file ends (Content-Range: bytes START-END/TOTAL)
        content_range = response.headers.get("Content-Range", "")
        resumed = have > 0 and response.status == 206 and re.match(rf"bytes {have}-", content_range, re.I) is not None
        if not resumed:  # a fresh download, or a server that ignores Range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, dynamic_ncols=True,
                   disable=not progress)
        try:
            with bar, open(part, "ab" if resumed else "wb") as fh:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    fh.write(block)
                    have += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise DataError(f"download of {url} stopped after {have} bytes: {err}{_resume_hint(part, have)}") from None
    if total is not None and have != total:
        raise DataError(f"download of {url} stopped after {have} of {total} bytes{_resume_hint(part, have)}")
    os.replace(part, dest)
    return dest


def _resume_hint(part: Path, have: int) -> str:
    return f"; run the same command again to resume ({have} bytes kept in {part})" if have else ""


def fetch_protocol_file(name: str, expected: str, root: Path, base_url: str = BASE_URL, progress: bool = False) -> Path:
    """One protocol file in ``root``, downloaded unless already there with the MD5 ``expected``."""
    dest = root / name
    if dest.is_file() and md5_of(dest) == expected:
        return dest
    staging = root / DOWNLOAD_DIR / name
    if not staging.is_file():  # else copied there by hand (offline): checked like a download
        fetch(base_url + name, staging, progress=progress)
    got = md5_of(staging)
    if got != expected:
        staging.unlink()
        raise DataError(f"{base_url + name} has MD5 {got}, the published one is {expected}: a damaged or other file")
    os.replace(staging, dest)
    return dest


def find_image_root(folder: Path) -> Path | None:
    """The folder (at most 3 levels down) holding ``<Name>/<Name>_NNNN.jpg`` person folders."""
    candidates = [folder]
    for _ in range(4):
        for candidate in candidates:
            people = [p for p in candidate.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
            if people and any(any(p.glob(f"{p.name}_*.jpg")) for p in people[:20]):
                return candidate
        candidates = [p for c in candidates for p in c.iterdir() if p.is_dir()]
    return None


def check_image_counts(image_root: Path, names: Mapping[str, int]) -> None:
    """Every listed person has exactly the listed number of images, and nobody else is there."""
    problems = []
    on_disk = {p.name: p for p in image_root.iterdir() if p.is_dir()}
    for name, count in names.items():
        folder = on_disk.get(name)
        found = len([f for f in folder.iterdir() if f.is_file()]) if folder is not None else 0
        if found != count:
            problems.append(f"{name}: {found} image(s), lfw-names.txt lists {count}")
    problems += [f"{name}: not in lfw-names.txt" for name in sorted(set(on_disk) - set(names))]
    if problems:
        raise DataError(f"the images in {image_root} do not match {NAMES_FILE} ({len(problems)} problem(s)):\n"
                        + listing(problems, 20))


def download_lfw(root: str | os.PathLike, variant: str = "deepfunneled", base_url: str = BASE_URL,
                 md5: Mapping[str, str] | None = None, progress: bool = False, keep_archive: bool = False) -> Path:
    """Download, verify and install one LFW variant and the protocol files into ``root``.

    ``md5`` maps each protocol file to download to its MD5 (default :data:`PROTOCOL_MD5`).
    Returns the image folder (``root/lfw``, ``root/lfw_funneled`` or ``root/lfw-deepfunneled``).
    Raises :class:`DataError` naming the file when a download fails (the partial file is
    kept for the next run), a protocol file's MD5 differs, or the images do not match
    ``lfw-names.txt`` (nothing is installed then).
    """
    if variant not in ARCHIVES:
        raise ConfigError(f"unknown LFW variant {variant!r}; known: {', '.join(ARCHIVES)}")
    if not base_url.endswith("/"):
        base_url += "/"
    root = Path(root).expanduser()
    created = [p for p in [root, *root.parents] if not p.exists()]  # made by the mkdir below, innermost first
    root.mkdir(parents=True, exist_ok=True)
    protocol = PROTOCOL_MD5 if md5 is None else md5
    target, archive = root / VARIANTS[variant][0], root / DOWNLOAD_DIR / ARCHIVES[variant]
    try:
        for name, expected in protocol.items():
            fetch_protocol_file(name, expected, root, base_url, progress)
        names = read_name_counts(root / NAMES_FILE)
        if target.is_dir():
            check_image_counts(target, names)  # installed by an earlier run: still whole?
            return target
        if not archive.is_file():
            fetch(base_url + ARCHIVES[variant], archive, progress=progress)
    except SiteUnreachable as err:
        for folder in [root / DOWNLOAD_DIR, *created]:  # nothing was downloaded: no empty folders left behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        missing = [n for n in protocol if not (root / n).is_file()] + ([archive.name] if not target.is_dir() else [])
        raise DataError(f"{err}: to install offline, copy {', '.join(missing)} from {base_url} into "
                        f"{root / DOWNLOAD_DIR}/ and run the same command again (it checks their MD5s and the "
                        "image counts)") from None
    with tempfile.TemporaryDirectory(prefix=".lfw-extract-", dir=root) as tmp:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)  # zipfile drops absolute paths and "..": no member lands outside tmp
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            archive.unlink(missing_ok=True)  # a damaged archive is downloaded again next time
            raise DataError(f"{archive} ({base_url + ARCHIVES[variant]}) is not a valid zip archive: {err}; "
                            "it was removed, run the command again") from None
        image_root = find_image_root(Path(tmp))
        if image_root is None:
            raise DataError(f"{ARCHIVES[variant]} holds no <Name>/<Name>_NNNN.jpg folders")
        check_image_counts(image_root, names)
        os.replace(image_root, target)
    if not keep_archive:
        archive.unlink()
        with contextlib.suppress(OSError):
            (root / DOWNLOAD_DIR).rmdir()  # only when empty: another variant may be half downloaded
    return target


__all__ = [
    "BASE_URL", "LFW_URLS", "PROTOCOL_MD5", "check_image_counts", "download_lfw", "fetch", "fetch_protocol_file",
    "find_image_root",
]
