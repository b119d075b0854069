"""The house stays one-way: no import cycle between spar's modules and subpackages (lazy imports
inside functions count too), and no source file over ~600 lines."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "spar"


def unit(module: str) -> str:
    """spar.roles.judge -> spar.roles; spar.pipeline -> spar.pipeline (a top-level module is its own unit)."""
    parts = module.split(".")
    if len(parts) >= 2 and (SRC / parts[1]).is_dir():
        return ".".join(parts[:2])
    return ".".join(parts[:2])


def edges() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        me = unit(".".join(rel.parts).removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "spar" else [])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if n.startswith("spar.") and unit(n) != me:
                    out.setdefault(me, set()).add(unit(n))
    return out


def test_imports_run_one_way():
    graph = edges()
    seen: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(n: str, path: list[str]) -> None:
        seen[n] = 1
        for m in sorted(graph.get(n, ())):
            assert seen.get(m) != 1, "import cycle: " + " -> ".join(path[path.index(m):] + [m]) if m in path else m
            if m not in seen:
                visit(m, path + [m])
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            visit(n, [n])


def test_no_source_file_over_600_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
