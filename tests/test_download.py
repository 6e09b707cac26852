"""od/download.py: the cache folder and the source kinds (fetching a tarball into the cache:
tests/test_checkpoints.py; bad archives and URLs: tests/test_hostile_cli.py)."""
from pathlib import Path

from od import download


def test_cache_root_argument_then_environment_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "env"))
    assert download.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert download.cache_root() == tmp_path / "env"
    monkeypatch.delenv(download.CACHE_ENV)
    assert download.cache_root() == Path.home() / ".cache" / "od"


def test_archive_suffixes_and_gs_urls():
    for name in ("m.tar.gz", "m.tgz", "m.tar", "m.tar.bz2", "http://x/m.tar.xz"):
        assert download.is_archive(name), name
    assert not download.is_archive("m.zip") and not download.is_archive("ckpt-1.index")
    assert download.to_https("gs://bucket/a/b.tar.gz") == \
        "https://storage.googleapis.com/bucket/a/b.tar.gz"
    assert download.to_https("https://x/y") == "https://x/y"
