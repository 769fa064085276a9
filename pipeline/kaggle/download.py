"""The competition's files from Kaggle: the archive downloaded (resuming a partial one) and unpacked atomically."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tqdm import tqdm

from pipeline.data.download import DownloadError, check_layout
from pipeline.kaggle.api import safe_text, unreachable
from pipeline.utils.io import atomic_path


def kaggle_download(api, competition: str, out: Path, archive_dir: Path) -> None:
    """Download the competition archive (resuming a partial one) and unpack it atomically into ``out``.

    ``api`` is an authenticated ``KaggleApi`` (see :mod:`pipeline.kaggle.api`). The archive
    is kept in ``archive_dir`` until it has been unpacked, so an interrupted run resumes.
    """
    archive_dir.mkdir(parents=True, exist_ok=True)
    try:
        api.competition_download_files(competition, path=str(archive_dir), quiet=False)
    except Exception as exc:  # the client raises many types; all but a network failure mean the same to the user
        if (network := unreachable(exc)) is not None:
            raise network from None
        raise DownloadError(f"downloading {competition!r} failed: {safe_text(exc)}. Have you accepted the "
                            "competition's rules on its Kaggle page?") from None
    archive = archive_dir / f"{competition}.zip"
    if not archive.is_file():
        raise DownloadError(f"the Kaggle client reported success but {archive} does not exist")
    with atomic_path(out) as tmp:
        _unzip(archive, tmp)
        for inner in sorted(tmp.glob("*.zip")):  # an archive may hold train.zip and test.zip
            _unzip(inner, tmp)
            inner.unlink()
        check_layout(tmp)
    archive.unlink()


def _unzip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in tqdm(bundle.infolist(), desc=f"unzip {archive.name}", unit="file"):
                bundle.extract(member, into)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive}: not a valid zip archive ({exc}); delete it and run again") from exc
