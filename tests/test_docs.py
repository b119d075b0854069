"""The README and the docs keep their promises: short, every link resolves, and every "N of M"
figure the README quotes is one the measurement record (results/README.md, bench/README.md) holds."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "results" / "README.md", ROOT / "bench" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")), ROOT / "src" / "spar" / "recipes" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
RATIO = re.compile(r"\b(\d+) ?(?:of|/) ?(\d+)\b")


def test_the_readme_is_read_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def _ratios(text: str) -> set[tuple[str, str]]:
    return {(a, b) for a, b in RATIO.findall(text) if a != b}


def test_every_n_of_m_in_the_readme_is_in_the_measurement_record():
    record = (ROOT / "results" / "README.md").read_text() + (ROOT / "bench" / "README.md").read_text()
    missing = sorted(_ratios((ROOT / "README.md").read_text()) - _ratios(record))
    assert not missing, f"README figures not found in results/README.md or bench/README.md: {missing}"
