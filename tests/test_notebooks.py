"""The tutorial notebooks stay in step with the library: every code cell compiles, every name they
import from ``od`` exists, and both notebooks run top to bottom (executed with papermill, with
their ``parameters`` cell shrunk to a few steps), printing AP and drawing detections."""
import ast
import importlib
import importlib.util
import json

import pytest

from tests.conftest import ROOT, TINY, needs_shared

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_compile_and_od_imports_exist(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells, f"{path.name} has no code"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: one cell tagged 'parameters' (papermill)"
    for k, source in enumerate(cells):
        tree = ast.parse(source, f"{path.name} cell {k}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "od":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"{path.name}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "od":
                        importlib.import_module(alias.name)
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "od"):
                import od
                assert hasattr(od, node.attr), f"{path.name}: od.{node.attr}"


def _run(name, tmp_path, parameters):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / name
    papermill.execute_notebook(str(ROOT / "notebooks" / name), str(out), parameters=parameters,
                               cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
                               execution_timeout=900)
    nb = json.loads(out.read_text(encoding="utf-8"))
    texts = []
    images = 0
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            texts.append("".join(o.get("text", "")))
            data = o.get("data", {})
            texts.append("".join(data.get("text/plain", "")))
            images += "image/png" in data
    return "\n".join(texts), images


_SMALL = [o for o in TINY if not o.startswith("train.steps=")]


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    text, images = _run("01_quickstart.ipynb", tmp_path, dict(
        WORK=str(tmp_path / "work"), NUM_IMAGES=24, STEPS=4, EXTRA_OVERRIDES=_SMALL))
    assert "'AP50':" in text            # the metrics cell prints AP
    assert images >= 2                  # PR curves and the drawn detections
    assert (tmp_path / "work" / "detections.png").stat().st_size > 0
    assert (tmp_path / "work" / "export" / "saved_model").is_dir() or any(
        (tmp_path / "work" / "export").iterdir())


@pytest.mark.slow
@needs_shared
def test_zoo_tflite_notebook_runs(tmp_path):
    text, images = _run("02_zoo_finetune_tflite.ipynb", tmp_path, dict(
        WORK=str(tmp_path / "work"), MAX_LATENCY_MS=40, STEPS=2, CALIBRATION_IMAGES=4,
        EXTRA_OVERRIDES=["model.input_size=128", "train.batch_size=2", "train.warmup_steps=1",
                         "train.steps_per_loop=1", "train.checkpoint_every=2"]))
    assert "model=retinanet_mobilenetv2_coco" in text   # fine-tunes what zoo_select.select picked
    assert "'AP50':" in text
    assert images >= 1 and (tmp_path / "work" / "detections.png").stat().st_size > 0
    # the drawn photos are test-split photos: none of them is in the training CSV
    import csv
    train = {r["filename"] for r in csv.DictReader(
        open(ROOT.parent / "shared/data/raccoon/data/train_labels.csv", newline=""))}
    test = {r["filename"] for r in csv.DictReader(
        open(ROOT.parent / "shared/data/raccoon/data/test_labels.csv", newline=""))}
    assert test and not (test & train)
