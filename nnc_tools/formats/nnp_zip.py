"""The ``.nnp`` container, below the project layer: what each member is, opening an archive safely, and copying
members as stored (``cp``-fast, page-aligned), now or ahead of an edit (``CopyAhead``). Imports no protobuf, numpy or
NNabla, so a command can start copying before it loads those."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, Optional, Sequence

from ..errors import NncToolsError
from ..fileio import PathLike, same_file, temp_beside
from .naming import TEXT_EXTS

NNP_VERSION = "0.1\n"

# Zip safety bounds. A member is refused when it declares more than MAX_MEMBER_BYTES, or when it is larger than
# RATIO_CHECK_BYTES and inflates more than MAX_RATIO times its stored size (zip bombs); text is read whole, so smaller.
MAX_MEMBER_BYTES = 32 << 30
MAX_TEXT_BYTES = 1 << 30
RATIO_CHECK_BYTES = 16 << 20
MAX_RATIO = 200
_COPY_CHUNK = 1 << 20
_AHEAD_CHUNK = 64 << 20  # copy-ahead checks for a stop between kernel copies this large
_PAGE = 4096
_ALIGN_FROM = 1 << 20  # members this large are page-aligned as in the source (see _alignment_record)
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def open_nnp(path: PathLike) -> zipfile.ZipFile:
    """Open an ``.nnp`` and refuse unsafe archives (path traversal, zip bombs, damaged zips) before reading anything."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise NncToolsError(path, f"not a readable .nnp (zip) archive: {e}") from None
    except OSError as e:
        raise NncToolsError(path, f"cannot read: {e.strerror or e}") from None
    try:
        seen = set()
        for info in zf.infolist():
            _check_member(path, info)
            if info.filename in seen:  # zipfile reads the last of them only: the other's bytes would be lost on save
                raise NncToolsError(path, f"member '{info.filename}' appears twice in the archive")
            seen.add(info.filename)
    except NncToolsError:
        zf.close()
        raise
    return zf


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise NncToolsError(path, f"unsafe member name '{name}' (absolute or containing '..')")
    if info.file_size > MAX_MEMBER_BYTES or (
        info.file_size > RATIO_CHECK_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1)
    ):
        raise NncToolsError(
            path, f"member '{name}' inflates to {info.file_size} bytes from {info.compress_size} (zip bomb?); refused"
        )


def member_role(info: zipfile.ZipInfo) -> str:
    """What a member is to a project: "network" (text or binary definition), "parameters", or "carry" (kept as is)."""
    if info.is_dir():
        return "carry"
    lower = info.filename.lower()
    ext = os.path.splitext(lower)[1]
    if ext in TEXT_EXTS:
        return "network"
    if ext == ".h5" or (ext == ".protobuf" and PurePosixPath(lower).name.startswith("parameter")):
        return "parameters"
    if ext == ".protobuf":
        return "network"
    return "carry"


def new_info(name: str, compress_type: int, like: Optional[zipfile.ZipInfo] = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=like.date_time if like else _FIXED_DATE)
    info.compress_type = compress_type
    if like is not None:
        info.external_attr = like.external_attr
        info.comment = like.comment
        info.create_system = like.create_system
    else:
        info.external_attr = 0o644 << 16
    return info


def copy_member(src: zipfile.ZipFile, info: zipfile.ZipInfo, dst: zipfile.ZipFile, stop: Optional[threading.Event] = None) -> None:
    """Copy one member as ``cp`` would: its stored (compressed) bytes unchanged, with the source's CRC, sizes and method,
    streamed in chunks, never inflated or deflated again (what makes an edit of a 500 MB .nnp cost about a ``cp``).

    ``zipfile`` has no public call for this; it is its own ``_lock``/``fp``/``filelist``/``NameToInfo``/``start_dir``
    bookkeeping, done as ``ZipFile.write`` does it."""
    where = Path(src.filename)
    if info.flag_bits & 0x1:
        raise NncToolsError(where, f"member '{info.filename}' is encrypted; .nnp members never are")
    out = new_info(info.filename, info.compress_type, info)
    out.extra = _without_zip64(info.extra)
    out.CRC, out.compress_size, out.file_size = info.CRC, info.compress_size, info.file_size
    out.flag_bits = info.flag_bits & ~0x08  # sizes go in the local header; no data descriptor follows the data
    out.create_version, out.extract_version = info.create_version, info.extract_version
    with open(where, "rb") as fin:
        fin.seek(info.header_offset)
        local = fin.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise NncToolsError(where, f"member '{info.filename}' is damaged: bad local header")
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.compress_size > os.fstat(fin.fileno()).st_size:
            raise NncToolsError(where, f"member '{info.filename}' is damaged: its data runs past the end of the file")
        zip64 = info.file_size >= zipfile.ZIP64_LIMIT or info.compress_size >= zipfile.ZIP64_LIMIT
        with dst._lock:
            dst.fp.seek(dst.start_dir)
            out.header_offset = dst.fp.tell()
            header = out.FileHeader(zip64=zip64)
            if info.compress_size >= _ALIGN_FROM:
                extra = out.extra  # the central directory keeps the member's own extra field
                out.extra += _alignment_record(out.header_offset + len(header), start)
                header = out.FileHeader(zip64=zip64)
                out.extra = extra
            dst.fp.write(header)
            _copy_range(fin, start, dst.fp, info.compress_size, where, info.filename, stop)
            dst.filelist.append(out)
            dst.NameToInfo[out.filename] = out
            dst.start_dir = dst.fp.tell()
            dst._didModify = True


def copy_members(src: zipfile.ZipFile, names: Sequence[str], dst: zipfile.ZipFile,
                 stop: Optional[threading.Event] = None) -> None:
    """``copy_member`` for each of ``names``, in that order."""
    for name in names:
        copy_member(src, src.getinfo(name), dst, stop)


def _alignment_record(data_at: int, source_at: int) -> bytes:
    """An extra-field record (zipalign's id 0xD935: the alignment, then zeros) that moves a member's data from
    ``data_at`` to where it lies in the source modulo a page, so that the kernel copies whole pages (measured on ext4:
    a 512 MB copy_file_range 0.19 s aligned, 0.22 s three bytes off)."""
    pad = (source_at - data_at) % _PAGE
    while 0 < pad < 6:  # a record is at least its 4-byte header and the 2-byte alignment
        pad += _PAGE
    return (0xD935).to_bytes(2, "little") + (pad - 4).to_bytes(2, "little") + _PAGE.to_bytes(2, "little") + bytes(pad - 6) if pad else b""


class _Stopped(Exception):
    """A copy-ahead was told to stop."""


def _copy_range(fin, start: int, fout, size: int, where: Path, name: str, stop: Optional[threading.Event] = None) -> None:
    """``size`` bytes of ``fin`` from ``start`` appended to ``fout``: in the kernel (``copy_file_range``, as ``cp`` does)
    where the platform has it, else in 1 MiB chunks. With ``stop``, looks at it between chunks of _AHEAD_CHUNK."""
    fout.flush()
    dst_fd, at = fout.fileno(), fout.tell()
    done = 0
    step = _AHEAD_CHUNK if stop is not None else size
    if hasattr(os, "copy_file_range"):
        try:
            while done < size:
                if stop is not None and stop.is_set():
                    raise _Stopped()
                n = os.copy_file_range(fin.fileno(), dst_fd, min(size - done, step), start + done, at + done)
                if n == 0:
                    raise NncToolsError(where, f"member '{name}' is damaged: short read")
                done += n
        except OSError:
            pass  # not between these file systems: the portable way from where it stopped
    fin.seek(start + done)
    fout.seek(at + done)
    while done < size:
        if stop is not None and stop.is_set():
            raise _Stopped()
        chunk = fin.read(min(size - done, _COPY_CHUNK))
        if not chunk:
            raise NncToolsError(where, f"member '{name}' is damaged: short read")
        fout.write(chunk)
        done += len(chunk)
    fout.seek(at + size)


def _without_zip64(extra: bytes) -> bytes:
    """A member's extra field without its ZIP64 record (id 1), which ``FileHeader`` writes anew when needed."""
    kept, i = b"", 0
    while i + 4 <= len(extra):
        kind, size = int.from_bytes(extra[i:i + 2], "little"), int.from_bytes(extra[i + 2:i + 4], "little")
        if kind != 1:
            kept += extra[i:i + 4 + size]
        i += 4 + size
    return kept


class CopyAhead:
    """A network-only edit of an ``.nnp`` (what ``apply-freeze`` does), started before the edit: every member but the
    network definition is copied as stored into a new zip beside ``target`` by a thread, so that the kernel's copy of
    a large project overlaps the caller's imports, parsing and editing. ``nnp.save_project(..., ahead=self)`` adopts the
    file, appends the network and renames it into place; ``discard()`` stops the copy and deletes the file (a ``with``
    block does that on the way out unless the file was adopted). An archive that cannot be read is left to the loader
    to report: nothing is copied ahead then."""

    def __init__(self, source: PathLike, target: PathLike):
        self.source = Path(source)
        self.temp: Optional[Path] = None
        self.names: Optional[List[str]] = None
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._zout: Optional[zipfile.ZipFile] = None
        self._adopted = False
        if not Path(target).parent.is_dir():  # made when the output is written, not before the edit is known to work
            return
        try:
            self.temp = temp_beside(Path(target))
            zin = open_nnp(self.source)
        except (NncToolsError, OSError):  # the loader or the writer reports it, as without a copy ahead
            return
        self.names = [i.filename for i in zin.infolist() if member_role(i) != "network"]
        try:
            self._zout = zipfile.ZipFile(self.temp, "w", allowZip64=True)
        except OSError:
            zin.close()
            return
        self._thread = threading.Thread(target=self._copy, args=(zin,), name="nnp-copy-ahead", daemon=True)
        self._thread.start()

    def _copy(self, zin: zipfile.ZipFile) -> None:
        try:
            with zin:
                copy_members(zin, self.names, self._zout, self._stop)
        except _Stopped:
            pass
        except BaseException as e:  # re-raised in the caller's thread by adopt()
            self._error = e

    def adopt(self, source: Optional[PathLike], names: Sequence[str]) -> Optional[zipfile.ZipFile]:
        """The open zip, once the copy is done, if it copied ``names`` of ``source``; else None, its file deleted (the
        caller writes the file itself)."""
        if self._thread is None or source is None or list(names) != self.names or not same_file(source, self.source):
            self.discard()
            return None
        self._thread.join()
        if self._error is not None:
            self.discard()
            raise self._error
        self._adopted = True
        zout, self._zout = self._zout, None
        return zout

    def discard(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._zout is not None:
            self._zout.close()
            self._zout = None
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)

    def __enter__(self) -> "CopyAhead":
        return self

    def __exit__(self, *exc) -> None:
        if not self._adopted:
            self.discard()
