"""No import cycle between our files: the file-level import graph of every package (imports inside functions count)
has no strongly connected component larger than one file; a failure names each cycle's files."""
import grimp
import pytest

PACKAGES = ("hashcore", "lightning_modules", "datamodules", "callbacks", "hashbench")


def _cycles(edges: dict) -> list:
    """Strongly connected components of more than one module (Tarjan, iterative: no recursion limit)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def import_graph():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_cycle_finder_names_a_cycle():
    # the checker itself must be able to fail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_between_files(import_graph, package):
    cycles = [c for c in _cycles(import_graph) if any(m.split(".")[0] == package for m in c)]
    assert not cycles, f"import cycles touching {package}/: " + "; ".join(" <-> ".join(c) for c in cycles)
