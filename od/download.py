"""Download, verify and unpack zoo checkpoints into a cache, atomically.

``download(NAME | URL | PATH)`` returns a checkpoint folder:

- a zoo name → its URL (``gs://`` URLs are read through https://storage.googleapis.com/);
- ``http(s)://`` → streamed to ``<cache>/downloads/<file>.part`` with a progress bar; a ``.part``
  left by an interrupted run is resumed with a Range request (a server that ignores Range restarts
  it); after the last byte the SHA-256 is checked, then the archive is renamed to its final name;
- ``file://`` URL or local tarball → verified and unpacked the same way, no network;
- local folder or checkpoint prefix → returned as is.

Archives are unpacked (tarfile 'data' filter; absolute paths, ``..`` members, links and devices
refused) into a temporary folder that gets a marker file last and is then renamed to
``<cache>/<name>/``. The marker is what makes a cache entry count, for the source it names: a
folder without it is never used (nor replaced, when it holds files), so a failed or interrupted
download never leaves anything that looks complete. One process at a time fills an entry (a
lock file ``<cache>/.<name>.lock``; the others wait). The cache is
``$OD_CACHE_DIR``, default ``~/.cache/od``; fill it by hand for offline use by copying a finished
``<cache>/<name>/`` (with its marker) or by putting the archive itself in ``<cache>/downloads/``.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import gzip
import hashlib
import http.client
import json
import lzma
import os
import re
import shutil
import socket
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from od import atomic
from od.errors import ZooError
from od.zoo import get

CACHE_ENV = "OD_CACHE_DIR"
MARKER = ".od-complete.json"
_ARCHIVE = re.compile(r"\.(tar\.gz|tgz|tar|tar\.bz2|tar\.xz)$")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 16
_TIMEOUT_S = 60


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$OD_CACHE_DIR``, else ``~/.cache/od``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "od"


def is_archive(name: str) -> bool:
    """True when ``name`` ends like a tarball (``.tar.gz``, ``.tgz``, ``.tar``, ``.tar.bz2``,
    ``.tar.xz``): the one list of archive suffixes (od.checkpoints decides sources with it)."""
    return bool(_ARCHIVE.search(name))


def to_https(url: str) -> str:
    """``gs://bucket/key`` → ``https://storage.googleapis.com/bucket/key``; others unchanged."""
    return "https://storage.googleapis.com/" + url[5:] if url.startswith("gs://") else url


def download(source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
             sha256: str | None = None, progress: bool = True) -> Path:
    """A local checkpoint folder for ``source`` (zoo name, URL, local tarball/folder/prefix).

    ``sha256`` (hex) is checked against the archive; for a zoo name it defaults to the entry's.
    When no checksum is known nothing is verified, but the computed hash is still recorded in the
    cache marker (``<cache>/<name>/.od-complete.json``). Returns the unpacked folder (the archive's
    single top-level folder when it has one), or a local folder/prefix as given.

    A cache entry counts only for the source it was made from (a URL, or a local tarball's
    absolute path, size and modification time): another file of the same name replaces it. Two
    processes asking for one entry take turns (the second waits, then finds it in the cache).

    Raises ZooError on an empty source, an unknown name or missing path, a URL that names no file,
    a ``sha256`` that is not 64 hex digits, a cache folder that cannot be created or written, a
    cache entry folder holding files od did not put there (it is never replaced), an HTTP or
    network failure (the partial file is kept and the next call resumes it), a checksum mismatch
    (the bad file is removed), or an unsafe, damaged (gzip/bz2/xz check failed) or empty archive.
    """
    src = os.fspath(source)
    if not src.strip():
        raise ZooError("the checkpoint source is empty: give a zoo name (`od zoo list`), an "
                       "http(s)/gs/file URL, or a local tarball, folder or checkpoint prefix")
    if sha256 is not None and not _SHA256.fullmatch(sha256.strip().lower()):
        raise ZooError(f"--sha256 {sha256!r} is not a SHA-256 checksum (64 hex digits, as "
                       f"`sha256sum FILE` prints); fix it or leave it out")
    name = None
    if ("://" not in src and "/" not in src and not is_archive(src)
            and not Path(src).expanduser().exists()):
        entry = get(src)
        name, src, sha256 = entry.name, entry.url, sha256 or entry.sha256
    src = to_https(src)
    sha256 = sha256.strip().lower() if sha256 else None
    root = cache_root(cache_dir)
    if src.startswith("file://"):
        url = urllib.parse.urlparse(src)
        if url.netloc not in ("", "localhost") or not url.path:
            raise ZooError(f"file URL {src!r} names no local file: write file:///ABSOLUTE/PATH "
                           f"(three slashes), or give the path itself")
        src = urllib.request.url2pathname(url.path)
    if "://" not in src:
        path = Path(src).expanduser()
        if path.is_dir() or Path(f"{path}.index").exists():
            return path
        if not path.is_file():
            raise ZooError(f"checkpoint source {src!r} is neither a zoo name, a URL nor an "
                           f"existing file, folder or checkpoint prefix; check the path or see "
                           f"`od zoo list`")
        st = path.stat()
        with _locked(root, name or _stem(path.name)) as target:
            return _unpack_cached(path, target, str(path.resolve()), sha256, keep_archive=True,
                                  stamp=[st.st_size, st.st_mtime_ns])
    if not src.startswith(("http://", "https://")):
        raise ZooError(f"unsupported URL {src!r}: use http(s)://, gs://, file:// or a local path")
    filename = urllib.parse.unquote(urllib.parse.urlparse(src).path.rsplit("/", 1)[-1])
    if filename in ("", ".", ".."):
        raise ZooError(f"URL {src!r} names a folder, not a file: give the URL of the tarball "
                       f"(.tar.gz) or of the checkpoint prefix (e.g. .../ckpt-1)")
    with _locked(root, name or _stem(filename)) as target:
        done = _cached(target, sha256, src)
        if done is not None:
            return done
        if not _ARCHIVE.search(filename):
            return _fetch_prefix(src, target, sha256, progress)
        archive = root / "downloads" / filename
        if not archive.exists():
            _fetch(src, archive, sha256=sha256, progress=progress)
        return _unpack_cached(archive, target, src, sha256, keep_archive=False)


def _stem(filename: str) -> str:
    return _ARCHIVE.sub("", filename) or filename


@contextlib.contextmanager
def _locked(root: Path, name: str):
    """Hold the cache entry ``root/name`` (yielded) for this process; wait while another has it.
    Raises ZooError when ``root`` cannot be created or ``name`` is no single folder name."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ZooError(f"cannot name a cache entry {name!r}: give a source whose file name is a "
                       f"real name (e.g. model.tar.gz)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{name}.lock", "w")
    except OSError as e:
        raise ZooError(f"cannot use the cache folder {root} ({e.strerror or e}): pass --cache-dir "
                       f"(cache_dir=) or set {CACHE_ENV} to a folder you can write") from e
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f"od: waiting for another process that is filling {root / name} ...",
                  file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


def _cached(target: Path, sha256: str | None, source: str, stamp=None) -> Path | None:
    """The finished entry ``target`` if its marker says it was made from ``source`` (and, for a
    local tarball, the file's ``stamp`` [size, mtime_ns]) with ``sha256`` when given, else None."""
    marker = target / MARKER
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return None
    if not isinstance(info, dict) or info.get("source") != source or (
            stamp is not None and info.get("stamp") != stamp):
        return None
    if sha256 and info.get("sha256") != sha256:
        return None
    out = target / info["root"] if info.get("root") else target
    return out if out.is_dir() else None


def _check_free(target: Path) -> None:
    """Refuse to replace ``target`` when it holds anything od did not make (no marker)."""
    if (target / MARKER).is_file() or not os.path.lexists(target):
        return
    if target.is_dir() and not target.is_symlink() and not any(
            p.is_file() or p.is_symlink() for p in target.rglob("*")):
        return  # empty folders only: nothing to lose
    raise ZooError(f"{target} exists but is not an od cache entry (no {MARKER}): od does not "
                   f"replace files it did not make. Move it away, or pass another --cache-dir")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path, *, sha256: str | None, progress: bool) -> str:
    """Stream ``url`` to ``dest`` via ``dest.part`` (resumed when present); return its SHA-256."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with open(dest.with_name(f".{dest.name}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise ZooError(f"another process is downloading {dest.name} into {dest.parent}; "
                           f"wait for it, or remove {part} if none is") from e
        offset = part.stat().st_size if part.exists() else 0
        resp = _open(url, offset)
        if resp is None:  # 416: the .part is longer than the file, so it is not a prefix of it
            part.unlink()
            offset = 0
            resp = _open(url, 0)
        start = 0
        if offset and resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            start = int(m.group(1)) if m else 0
        if start != offset:  # server ignored Range (200) or answered another range
            offset = 0
            if resp.status == 206:  # its body starts elsewhere: fetch the whole file
                resp.close()
                resp = _open(url, 0)
        with resp:
            length = getattr(resp, "length", None)  # Content-Length as parsed (None: bad/absent)
            total = offset + length if length is not None else None
            got = offset
            try:
                with open(part, "r+b" if offset else "wb") as f, tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True,
                        desc=dest.name, disable=not progress, leave=False) as bar:
                    f.seek(offset)
                    f.truncate()
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                    f.flush()
                    os.fsync(f.fileno())
            except (http.client.HTTPException, socket.timeout, ConnectionError, OSError) as e:
                raise ZooError(f"download of {url} interrupted at {got} of {total or '?'} bytes "
                               f"({type(e).__name__}); run again to resume from {part}") from e
        if total is not None and got != total:
            raise ZooError(f"download of {url} stopped at {got} of {total} bytes; run again to "
                           f"resume from {part}")
        digest = _sha256(part)
        if sha256 and digest != sha256:
            part.unlink()
            raise ZooError(f"SHA-256 of {url} is {digest}, expected {sha256}; the file was "
                           f"removed. Check the checksum, or the URL serves another file")
        os.replace(part, dest)
    return digest


def _open(url: str, offset: int):
    """The HTTP response for ``url`` from byte ``offset`` on; None on 416 for a resumed range."""
    req = urllib.request.Request(url, headers={"User-Agent": "od"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(req, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None
        raise ZooError(f"download of {url} failed: HTTP {e.code} {e.reason}; check the URL, "
                       f"or pass a local tarball / file:// URL") from e
    except (urllib.error.URLError, OSError) as e:
        raise ZooError(f"cannot reach {url} ({getattr(e, 'reason', e)}); offline? pass a "
                       f"local path or file:// URL, or pre-fill the cache ({CACHE_ENV})") from e


def _fetch_prefix(url: str, target: Path, sha256: str | None, progress: bool) -> Path:
    """A bare checkpoint prefix URL (no archive): fetch ``.index`` and one data shard."""
    if sha256:
        raise ZooError(f"{url} is a checkpoint prefix (two files), not one archive; a single "
                       f"sha256 cannot check it: leave --sha256 out")
    prefix = Path(urllib.parse.urlparse(url).path).name
    _check_free(target)
    staging = target.parent / "downloads" / target.name
    digests = {}
    for suffix in (".index", ".data-00000-of-00001"):
        dest = staging / (prefix + suffix)
        if not dest.exists():
            try:
                _fetch(url + suffix, dest, sha256=None, progress=progress)
            except ZooError as e:
                raise ZooError(f"{e} (is {url} a single-shard TF checkpoint prefix? if not, "
                               f"download its files yourself and pass the local prefix)") from e
        if suffix == ".index":
            _check_index(dest, url)
        digests[dest.name] = _sha256(dest)
    with atomic.atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        for fname in digests:
            shutil.copyfile(staging / fname, tmp / fname)
        (tmp / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\n')
        _write_marker(tmp, url, None, "", files=digests)
    shutil.rmtree(staging, ignore_errors=True)
    return target


#: the last 8 bytes of a TensorFlow checkpoint's ``.index`` (a LevelDB-format table's footer)
_INDEX_MAGIC = (0xdb4775248b80fb57).to_bytes(8, "little")


def _check_index(path: Path, url: str) -> None:
    """Refuse (and remove) a fetched ``.index`` that is not a TF checkpoint index: a server that
    answers every path with an HTML page would otherwise make a cache entry of web pages."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 8))
        tail = f.read(8)
    if tail != _INDEX_MAGIC:
        head = path.read_bytes()[:40]
        path.unlink()
        raise ZooError(f"{url}.index is not a TensorFlow checkpoint index (it begins {head!r}); "
                       f"is {url} a checkpoint prefix? Give the URL of the tarball or of the "
                       f"prefix (the path without .index)")


def _check_members(tar: tarfile.TarFile, archive: Path) -> None:
    members = tar.getmembers()
    if not any(m.isfile() for m in members):
        raise tarfile.ReadError("it holds no files")
    for m in members:
        p = Path(m.name)
        bad = None
        if p.is_absolute() or m.name.startswith(("/", "\\")):
            bad = "an absolute path"
        elif ".." in p.parts:
            bad = "a '..' component"
        elif m.issym() or m.islnk():
            target = Path(m.linkname)
            inside = p.parent / target if m.issym() else target
            if target.is_absolute() or ".." in inside.parts:
                bad = f"a link to {m.linkname!r} outside the archive"
        elif not (m.isfile() or m.isdir()):
            bad = "a device or other special file"
        if bad:
            raise ZooError(f"archive {archive} has an unsafe member {m.name!r} ({bad}); refusing "
                           f"to unpack it. Get the checkpoint from its official URL")


def _write_marker(folder: Path, source: str, sha256: str | None, root: str, **extra) -> None:
    atomic.write_json(folder / MARKER, {
        "source": source, "sha256": sha256, "root": root,
        "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra})


def _unpack_cached(archive: Path, target: Path, source: str, sha256: str | None, *,
                   keep_archive: bool, stamp=None) -> Path:
    done = _cached(target, sha256, source, stamp)
    if done is not None:
        return done
    _check_free(target)
    digest = _sha256(archive)
    if sha256 and digest != sha256:
        if not keep_archive:
            archive.unlink()
        raise ZooError(f"SHA-256 of {archive} is {digest}, expected {sha256}; "
                       f"{'it was removed. ' if not keep_archive else ''}Check the checksum or "
                       f"the file")
    try:
        with atomic.atomic_path(target) as tmp:
            tmp.mkdir(parents=True)
            with tarfile.open(archive, "r:*") as tar:
                _check_members(tar, archive)
                tar.extractall(tmp, filter="data")
                while tar.fileobj.read(_CHUNK):  # to the end: gzip checks its CRC only there
                    pass
            tops = [p for p in tmp.iterdir()]
            root = tops[0].name if len(tops) == 1 and tops[0].is_dir() else ""
            _write_marker(tmp, source, digest, root,
                          **({"stamp": stamp} if stamp is not None else {}))
    except OSError as e:
        if e.errno is None or isinstance(e, gzip.BadGzipFile):
            return _damaged(archive, keep_archive, e)
        raise ZooError(f"cannot unpack {archive} into {target.parent} ({e}): free disk space "
                       f"or pass another --cache-dir ({CACHE_ENV}); the archive is kept") from e
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
        return _damaged(archive, keep_archive, e)
    if not keep_archive:
        archive.unlink()
    return target / root if root else target


def _damaged(archive: Path, keep_archive: bool, e: Exception):
    if not keep_archive:
        archive.unlink(missing_ok=True)
        raise ZooError(f"cannot unpack {archive} ({e}); it is damaged or not a tar archive "
                       f"(removed): download it again") from e
    raise ZooError(f"cannot unpack {archive} ({e}): it is damaged or not a tar archive. Give a "
                   f"tarball (.tar.gz, .tgz, .tar, .tar.bz2, .tar.xz), a checkpoint folder, or a "
                   f"checkpoint prefix (the path without .index)") from e


__all__ = ["download", "is_archive", "cache_root", "to_https", "CACHE_ENV", "MARKER"]
