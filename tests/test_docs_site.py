"""The documentation site: every public name has its API entry, and the built site reads as it should.

The first test reads docs/api/*.md; the second builds the site in strict mode (``mkdocs``, the
``[docs]`` extra) and opens it as a reader would, in headless Chromium: the index and the methods
page are rendered to a DOM dump (their text checked) and to screenshots (checked not blank). It
skips, saying why, when mkdocs or Chromium is absent (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import hypergrad as hg

pytestmark = pytest.mark.float32

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000"]


def documented_names() -> set[str]:
    text = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    return set(re.findall(r"^::: hypergrad\.(\w+)\s*$", text, flags=re.M))


def test_every_public_name_has_an_api_entry():
    assert set(hg.__all__) - documented_names() == set(), "public names without an API entry in docs/api/"
    assert documented_names() - set(hg.__all__) == set(), "API entries for names that are not public"


def _inventory(site: Path) -> str:
    """The object names of mkdocstrings' Sphinx-style inventory (four header lines, then zlib)."""
    raw = (site / "objects.inv").read_bytes()
    body = raw.split(b"\n", 4)[4]
    return zlib.decompress(body).decode()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_site_builds_strict_and_reads_in_a_browser(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs not installed (pip install -e '.[docs]')")
    browser = _chromium()
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    inventory = _inventory(site)
    assert all(f"hypergrad.{name} " in inventory for name in hg.__all__), "a public name missing from the site"
    if browser is None:
        pytest.skip("chromium not installed (apt-get install -y chromium): site built, not opened in a browser")
    for page, expected in ((site / "index.html", ["Writing a bilevel problem", "Examples"]),
                           (site / "api" / "methods" / "index.html", ["StochasticNeumann", "max_iter"])):
        profile = tmp_path / f"profile-{page.parent.name}"
        url = page.as_uri()
        dom = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120)
        assert all(word in dom.stdout for word in expected), (url, dom.stderr[-2000:])
        shot = tmp_path / f"{page.parent.name}.png"
        subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-shot", f"--screenshot={shot}", url],
                       capture_output=True, timeout=120)
        image = pytest.importorskip("matplotlib.image").imread(shot)
        assert image.shape[:2] == (1000, 1280) and image.std() > 0.05, "blank screenshot"
