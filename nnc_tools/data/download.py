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
