"""The public API of ``import od``: every name in ``od.__all__`` resolves, importing is light and
side-effect free, and ``od.evaluate`` / ``od.export`` are both callables and the modules."""
import os
import subprocess
import sys

import od
from tests.conftest import ROOT


def test_all_names_resolve():
    for name in od.__all__:
        assert getattr(od, name) is not None, name
    assert issubclass(od.ConfigError, od.OdError)
    assert callable(od.convert) and callable(od.fine_tune) and callable(od.detect_folder)


def test_evaluate_and_export_are_callable_modules():
    from od import evaluate as evaluate_module
    from od.export import export as export_function
    assert od.evaluate is evaluate_module and callable(od.evaluate)
    assert od.export.export is export_function and callable(od.export)
    assert od.evaluate.evaluate.__doc__


def test_import_is_light_and_has_no_side_effects():
    code = ("import os, sys; before = dict(os.environ); import od; "
            "assert 'tensorflow' not in sys.modules, 'od imported tensorflow'; "
            "assert 'matplotlib.pyplot' not in sys.modules; "
            "assert dict(os.environ) == before, 'od changed os.environ'")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def test_unknown_attribute():
    import pytest
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        od.nope  # noqa: B018


def test_importing_cli_and_train_changes_no_environment():
    code = ("import os; before = dict(os.environ); import od.cli, od.train, od.data.inspect; "
            "assert dict(os.environ) == before, 'import changed os.environ'; "
            "import sys; assert 'matplotlib.pyplot' not in sys.modules")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)


def test_tests_readme_names_every_module_and_test_file():
    """tests/README.md maps each module to its tests: every module and test file is in it, and
    every file it names exists."""
    import re
    root = ROOT
    text = (root / "tests" / "README.md").read_text(encoding="utf-8")
    modules = sorted(p.relative_to(root).as_posix() for p in (root / "od").rglob("*.py"))
    tests = sorted(p.name for p in (root / "tests").glob("test_*.py"))
    assert [m for m in modules if f"`{m}`" not in text] == []
    assert [t for t in tests if f"`{t}`" not in text] == []
    named = set(re.findall(r"`(test_\w+\.py)`", text)) | set(re.findall(r"`(od/[\w/]+\.py)`", text))
    named = {n for n in named if "/X." not in n and n != "test_X.py"}  # the naming rule's X
    assert [n for n in sorted(named) if not (root / ("tests/" + n if n.startswith("test_")
                                                     else n)).is_file()] == []
