"""WordNet for METEOR's synonym stage, found offline.

Looked up in order: ``$DPS_LENS_WORDNET`` (a WordNet 3.x database directory), nltk's own data
(``python -m nltk.downloader wordnet``), then Debian's ``wordnet-base`` package
(``apt-get install wordnet-base``: WordNet 3.0 in ``/usr/share/wordnet``). Debian leaves out the
``lexnames`` index nltk reads, so a mirror directory with it is built once under the cache.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from dps_lens._io import atomic_write, atomic_write_text
from dps_lens.errors import DpsLensError
from dps_lens.tiny import cache_root

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

DEBIAN_WORDNET = Path("/usr/share/wordnet")
DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
_DATABASE = ("data.noun", "index.noun", "data.verb", "index.verb")


def _is_database(path: Path) -> bool:
    return all((path / name).exists() for name in _DATABASE)


def _lexnames(n_files: int = 45) -> str:
    """The lexicographer file index (``NN name category``), from Debian's man page when present."""
    if DEBIAN_LEXNAMES_MAN.exists():
        text = gzip.decompress(DEBIAN_LEXNAMES_MAN.read_bytes()).decode("utf-8", "replace")
        rows = re.findall(r"^(\d\d)\t(\S+)\s", text, flags=re.MULTILINE)
        if rows:
            category = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
            return "".join(f"{i}\t{name}\t{category[name.split('.')[0]]}\n" for i, name in rows)
    # Names only label synsets (Synset.lexname); METEOR does not read them.
    return "".join(f"{i:02d}\tlexfile.{i:02d}\t0\n" for i in range(n_files))


def _debian_mirror() -> Path:
    mirror = cache_root() / "wordnet-debian"
    mirror.mkdir(parents=True, exist_ok=True)
    for source in DEBIAN_WORDNET.iterdir():
        copy = mirror / source.name  # a copy: nltk refuses links that leave the corpus root
        if source.is_file() and not copy.exists():
            atomic_write(copy, lambda tmp, source=source: shutil.copyfile(source, tmp))
    if not (mirror / "lexnames").exists():
        atomic_write_text(mirror / "lexnames", _lexnames())
    return mirror


def wordnet_root() -> Path:
    """The WordNet database directory METEOR will use (see the module docstring for the order)."""
    configured = os.environ.get("DPS_LENS_WORDNET")
    if configured:
        path = Path(configured)
        if not _is_database(path):
            raise DpsLensError(f"DPS_LENS_WORDNET={path} is not a WordNet database directory")
        return path
    import nltk

    try:
        return Path(str(nltk.data.find("corpora/wordnet")))
    except LookupError:
        pass
    if _is_database(DEBIAN_WORDNET):
        return _debian_mirror()
    raise DpsLensError(
        "METEOR needs WordNet, which was not found offline: install Debian's wordnet-base "
        "(apt-get install wordnet-base), run python -m nltk.downloader wordnet, or point "
        "DPS_LENS_WORDNET at a WordNet 3.x database directory"
    )


@functools.cache
def load_wordnet() -> WordNetCorpusReader:
    """An nltk ``WordNetCorpusReader`` over ``wordnet_root()`` (no network)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            """No mapping to nltk's own WordNet copy (only multilingual data needs it)."""
            return None

    root = wordnet_root()
    if str(root) not in nltk.data.path:  # nltk only reads corpora under its data path
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return EnglishWordNet(str(root), None)
