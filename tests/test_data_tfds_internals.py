"""The one place data.py relies on tfds internals: seeding the download folder with local archives.

If a tensorflow-datasets release changes how its download manager names or recognises cached
downloads, these tests fail with a message naming that release, instead of the loader silently
downloading 800 MB (online) or hanging on the network (offline).
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
import tensorflow_datasets as tfds

from unet_clustering import data

CHANGED = f"tensorflow-datasets {tfds.__version__} changed what data._seed_download_cache relies on"


class NetworkUsed(Exception):
    """Raised where tfds would connect to the internet."""


def registered_urls() -> dict[str, str]:
    """``{archive file name: url}`` as the builder registers them."""
    url_infos = tfds.builder_cls(data.DATASET_NAME).url_infos
    return {(info.filename or url.rsplit("/", 1)[-1]): url for url, info in url_infos.items()}


def test_the_builder_still_downloads_the_two_archives_from_the_probed_host() -> None:
    urls = registered_urls()
    assert set(urls) == set(data.ARCHIVE_NAMES), f"{CHANGED}: the builder registers {sorted(urls)}"
    hosts = {urlparse(url).hostname for url in urls.values()}
    assert hosts == {data.DOWNLOAD_HOST}, f"{CHANGED}: the archives now come from {hosts}"


def test_the_download_manager_takes_the_seeded_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "packed").mkdir()
    archives = {name: tmp_path / "packed" / name for name in data.ARCHIVE_NAMES}
    for name, archive in archives.items():
        archive.write_bytes(f"the local {name}".encode())
    downloads = tmp_path / "downloads"
    data._seed_download_cache(downloads, archives)

    def no_network(*args: object, **kwargs: object) -> None:
        raise NetworkUsed("this test allows no network")

    # Should tfds look past the seeded files, it fails at once (no OSError, so no retries).
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    manager = tfds.download.DownloadManager(
        download_dir=downloads,
        dataset_name=data.DATASET_NAME,
        url_infos=tfds.builder_cls(data.DATASET_NAME).url_infos,
    )
    try:
        paths = manager.download(registered_urls())
    except Exception as error:  # noqa: BLE001 - any failure here means the seeding no longer works
        pytest.fail(
            f"{CHANGED}: its download manager ignores the seeded archives ({type(error).__name__}: {error})"
        )
    for name, path in paths.items():
        assert Path(path).read_bytes() == f"the local {name}".encode(), f"{CHANGED}: {name} came from {path}"
