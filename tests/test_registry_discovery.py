"""The registry in the pure core knows no package: calling any of its functions imports nothing above hashcore.
The methods' package finds its own methods: a look-up by name through ``lightning_modules`` sees every method
with nothing imported before."""
import subprocess
import sys

from tests.test_cli import REPO

ABOVE_THE_CORE = ("lightning_modules", "datamodules", "callbacks", "hashbench", "lightning")


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_core_registry_imports_nothing_above_it():
    """Before: its look-ups imported the package ``lightning_modules`` by name (the core reaching the layer above)."""
    loaded = _python(
        "import inspect, sys\n"
        "import hashcore.registry as r\n"
        "for name, f in inspect.getmembers(r, inspect.isfunction):\n"
        "    if f.__module__ != r.__name__ or name.startswith('_') or name == 'register_method':\n"
        "        continue\n"
        "    try:\n"
        "        f('cib') if inspect.signature(f).parameters else f()\n"
        "    except (ValueError, KeyError):\n"
        "        pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ABOVE_THE_CORE!r}))\n")
    assert loaded == "[]"


def test_a_look_up_by_name_finds_every_method_file_unaided():
    """In a fresh process nothing imported the method files: ``lightning_modules``' look-ups find them all."""
    import importlib
    import pkgutil

    import lightning_modules
    from hashcore import registry

    for module in pkgutil.iter_modules(lightning_modules.__path__):  # every file, imported by hand
        if not module.name.startswith("_"):
            importlib.import_module(f"lightning_modules.{module.name}")
    everything = sorted(registry.registered())
    found = _python("import lightning_modules as lm\n"
                    "print(lm.resolve_method_name('CIBHash'), lm.get_method('hashnet').__name__, "
                    "','.join(sorted(lm.method_names())))").split()
    assert found == ["cib", "HashNet", ",".join(everything)]


def test_get_method_as_the_first_look_up_of_a_fresh_process():
    """``get_method`` once read the registry before discovering the files (a KeyError for every method when it was
    the process's first look-up, as in ``benchmarks/bench_ae_overhead.py``)."""
    assert _python("from lightning_modules import get_method\n"
                   "print(get_method('ae_bihalf').__name__)") == "BiHalfAutoencoder"
