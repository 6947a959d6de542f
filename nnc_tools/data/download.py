"""Fetch a dataset archive by URL into a cache folder, like NNC's ``dataset-require=``: resume-safe and md5-checked."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..errors import NncToolsError
from ..fileio import atomic_output
from .cache import cache_dir
from .cifar import verify_official


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https", "file", "ftp")


def fetch(url: str, verify: bool = True, folder: Optional[Path] = None) -> Path:
    """Download ``url`` into the cache (reusing a verified copy); a partial download never takes the final name."""
    folder = folder or cache_dir()
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise NncToolsError(url, "URL names no file")
    target = folder / name
    if target.is_file():
        try:
            if verify:
                verify_official(target)
            return target
        except NncToolsError:
            target.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_output(target) as temp, open(temp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}", disable=None, leave=False) as bar:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            if verify:
                try:
                    verify_official(temp, name)
                except NncToolsError as e:
                    raise NncToolsError(url, e.problem) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise NncToolsError(url, f"download failed: {getattr(e, 'reason', e)}") from None
    return target


class DownloadCut(NncToolsError):
    """A download the connection cut before its end: its bytes stay in its partial file for the next try to resume."""


def partial_name(target: Path) -> Path:
    """Where a download's bytes gather before they are checked: ``Resnet-18.partial.nnp`` for ``Resnet-18.nnp`` (the
    extension kept, so the checks read it as what it will be)."""
    return target.with_name(f"{target.stem}.partial{target.suffix}")


def download_resumable(url: str, target: Path, *, attempts: int = 3, timeout: float = 60) -> Path:
    """Download ``url`` into ``partial_name(target)`` and return that path (the caller checks it, then renames it onto
    ``target``). A part left by a cut download is resumed with an HTTP Range request; a connection cut halfway is
    resumed up to ``attempts`` times within one call. Refused in one line: an HTTP error, a web page where a file was
    expected, a size other than the server announced. Nothing is left behind unless bytes of the right file arrived."""
    part = partial_name(target)
    for attempt in range(attempts):
        try:
            _download_once(url, part, timeout)
            return part
        except DownloadCut:
            if attempt == attempts - 1:
                raise
        except NncToolsError:
            part.unlink(missing_ok=True)
            raise
    return part  # not reached: the last attempt returns or raises


def _download_once(url: str, part: Path, timeout: float) -> None:
    import http.client

    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is as long as the file, or longer: start again
            part.unlink()
            raise DownloadCut(url, "the partial download did not fit the file; starting again") from None
        raise NncToolsError(url, f"download failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        if have:
            raise DownloadCut(url, f"download failed: {getattr(e, 'reason', e)} ({have:,} bytes kept in {part}; run "
                              "again to resume)") from None
        raise NncToolsError(url, f"download failed: {getattr(e, 'reason', e)}") from None
    with response:
        if "text/html" in (response.headers.get("Content-Type") or ""):
            raise NncToolsError(url, "the server sent a web page (text/html), not the file: a wrong URL, or a mirror that "
                                "wants a login")
        if have and response.status != 206:
            have = 0  # the server ignores Range: the whole file comes again
        part.parent.mkdir(parents=True, exist_ok=True)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                             desc=f"download {part.name.replace('.partial', '')}", disable=None,
                                                             leave=False) as bar:
            try:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, OSError) as e:
                raise DownloadCut(url, f"the connection was cut ({e.__class__.__name__})") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise DownloadCut(url, f"the connection was cut at {size:,} of {total:,} bytes")
    if total is not None and size > total:
        raise NncToolsError(url, f"received {size:,} bytes where the server announced {total:,}")
