"""The evidence packet's HTML in a real headless browser (Debian's `chromium`): it loads as one file with
nothing fetched, the six section headings and the trail render, and it prints to a PDF with pages.
Skips, saying why, only where no Chromium is installed (.ci/run installs it where apt can)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from bot import evidence_render
from commands import evidence
from test_evidence_packet import TITLES, through_retrospective

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install -y chromium): the "
                                                         "packet's HTML was not checked in a browser")


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}", *args]
    # a generous bound so a wedged browser fails the test instead of hanging CI; not a speed check
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HOME": str(tmp_path)})


@pytest.fixture
def packet_file(db, clock, policy, tmp_path):
    rid = through_retrospective(db, clock, policy, summary="<script>document.title='owned'</script> & more")
    path = tmp_path / "evidence.html"
    path.write_text(evidence_render.render(evidence.packet(db, rid, clock.now()), "html"), encoding="utf-8")
    return path


def test_the_browser_renders_the_six_sections_and_runs_nothing_typed(packet_file, tmp_path):
    done = chromium(tmp_path, "--dump-dom", packet_file.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert headings == [f"{n}. {t}" for n, t in enumerate(TITLES, 1)] + ["Audit trail"]
    assert "<title>Evidence packet REL-1" in dom and "owned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    assert "&lt;script&gt;" in dom  # shown as text, never run


# (CSS page size, the PDF's MediaBox in points): the packet sets no size, so it prints on the reader's paper
PAPERS = {"A4": ("A4", (595, 842)), "Letter": ("letter", (612, 792))}


@pytest.mark.parametrize("paper", PAPERS)
def test_the_packet_prints_to_a_pdf_with_pages_on_a4_and_letter(packet_file, tmp_path, paper):
    css, (width, height) = PAPERS[paper]
    page = tmp_path / f"evidence-{paper}.html"
    page.write_text(packet_file.read_text().replace("@page {", f"@page {{ size: {css};", 1), encoding="utf-8")
    pdf = tmp_path / f"evidence-{paper}.pdf"
    done = chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    assert pdf.exists(), done.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    assert pages >= 2  # six sections and the trail do not fit one page: the print breaks between items
    boxes = {tuple(round(float(v)) for v in m.groups()) for m in
             re.finditer(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)}
    assert boxes == {(width, height)}, boxes
