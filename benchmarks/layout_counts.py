"""The package layout in figures (issue 23's closing note): modules, lines, modules flat at the top of dnnkit/,
the largest modules, function-level imports of dnnkit's own modules, and import circles (strongly connected
components of grimp's import graph, imports inside functions included).

    python benchmarks/layout_counts.py [TREE]    # TREE: a checkout (default: this one), e.g. a git worktree
"""
import ast, pathlib, sys
root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root))
mods = sorted(p for p in (root / "dnnkit").rglob("*.py"))
lines = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in mods}
print("modules", len(mods), "lines", sum(lines.values()))
print("top-level flat modules", len([p for p in mods if p.parent == root / "dnnkit"]))
print("largest", sorted(lines.items(), key=lambda kv: -kv[1])[:6])
print("over 400 lines", [k for k, v in lines.items() if v > 400])
fn = 0; byfile = {}
for p in mods:
    tree = ast.parse(p.read_text())
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(f):
                if isinstance(n, ast.ImportFrom) and (n.level > 0 or (n.module or "").startswith("dnnkit")):
                    fn += 1; byfile[p.name] = byfile.get(p.name, 0) + 1
                elif isinstance(n, ast.Import) and any(a.name.startswith("dnnkit") for a in n.names):
                    fn += 1; byfile[p.name] = byfile.get(p.name, 0) + 1
print("function-level imports of dnnkit modules", fn, sorted(byfile.items(), key=lambda kv: -kv[1])[:5])
import grimp
g = grimp.build_graph("dnnkit", cache_dir=None)
ms = sorted(g.modules)
idx = {m: i for i, m in enumerate(ms)}
# Tarjan
sys.setrecursionlimit(10000)
index = {}; low = {}; st = []; on = set(); comps = []; c = [0]
def sc(v):
    index[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in g.find_modules_directly_imported_by(v):
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: comps.append(sorted(comp))
for m in ms:
    if m not in index: sc(m)
print("import circles (strongly connected components > 1 module, function-level imports included):", len(comps), [len(x) for x in comps])
for x in comps: print("  ", x)
