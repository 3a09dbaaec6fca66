"""Function models (issue 18, item 3): a function pickled from a script is refused with one
line saying how to fix it; one pickled by value with cloudpickle registers and predicts; one
from the user's own module records where it came from, and ``vigil serve`` without that
directory on PYTHONPATH exits 2 with one line naming it instead of crash-looping."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.registry import RegistrationError, load, register
from monitoring.intake.validation import Validator
from service.cli import app
from tests.support.paths import ROOT
from tests.support.server import free_port

SCORE = "def score(X):\n    import numpy as np\n    X = np.asarray(X, dtype=float)\n    return 2.0 * X[:, 0] + X[:, 1]\n"


def _pickle_in_a_script(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> None:
    """Run ``body`` as a user's training script would run (its own ``__main__``)."""
    script = tmp_path / f"train_{uuid.uuid4().hex[:6]}.py"
    script.write_text(textwrap.dedent(body))
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, env={**os.environ, **(env or {})},
                   timeout=120)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    frame["y"] = 2.0 * frame["a"] + frame["b"]
    path = tmp_path_factory.mktemp("fn-ref") / "train.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def module_model(tmp_path_factory, reference, bentoml_home):
    """A function from the user's module ``vigil_user_<hex>`` in its own directory,
    registered with that directory on the path, then made unimportable again."""
    src = tmp_path_factory.mktemp("fn-src")
    name = f"vigil_user_{uuid.uuid4().hex[:8]}"
    (src / f"{name}.py").write_text(SCORE)
    _pickle_in_a_script(src, f"import joblib\nfrom {name} import score\njoblib.dump(score, 'model.joblib')\n",
                        env={"PYTHONPATH": str(src)})
    sys.path.insert(0, str(src))
    try:
        r = register(src / "model.joblib", reference, "y", name="fn-module")
    finally:
        sys.path.remove(str(src))
        sys.modules.pop(name, None)
    return {"tag": r.tag, "module": name, "dir": src}


def test_a_function_pickled_from_a_script_is_one_line_saying_how_to_fix_it(tmp_path, reference):
    _pickle_in_a_script(tmp_path, f"import joblib\n{SCORE}joblib.dump(score, 'model.joblib')\n")
    r = CliRunner().invoke(app, ["register", str(tmp_path / "model.joblib"), "--reference", str(reference),
                                 "--target", "y"])
    assert r.exit_code == 2
    (line,) = [ln for ln in r.output.splitlines() if ln.strip()]
    assert "Traceback" not in r.output and line.startswith("error: ")
    assert "refers to 'score', defined in the script that pickled it" in line
    assert "PYTHONPATH" in line and "cloudpickle" in line


def test_a_function_pickled_by_value_with_cloudpickle_registers_and_predicts(tmp_path, reference, bentoml_home):
    _pickle_in_a_script(tmp_path, f"import cloudpickle\n{SCORE}"
                                  "with open('model.pkl', 'wb') as fh:\n    cloudpickle.dump(score, fh)\n")
    r = register(tmp_path / "model.pkl", reference, "y", name="fn-cloudpickle")
    m = load(r.tag)  # stored with cloudpickle too: plain pickle cannot write a __main__ function
    batch = Validator(m.schema, max_rows=2).validate([{"a": 1.0, "b": 0.5}, {"a": -1.0, "b": 0.0}])
    assert m.adapter.predict(batch).labels.tolist() == [2.5, -2.0]
    assert r.baseline["r2"] == pytest.approx(1.0)


def test_a_function_from_a_module_records_its_directory_and_loading_without_it_names_it(module_model):
    with pytest.raises(RegistrationError) as e:
        load(module_model["tag"])
    message = str(e.value)
    assert f"needs the module {module_model['module']!r}" in message
    assert f"PYTHONPATH={module_model['dir']}" in message and "\n" not in message
    sys.path.insert(0, str(module_model["dir"]))
    try:
        loaded = load(module_model["tag"])
        assert loaded.meta["modules"] == {module_model["module"]: str(module_model["dir"])}
    finally:
        sys.path.remove(str(module_model["dir"]))
        sys.modules.pop(module_model["module"], None)


def test_vigil_serve_without_the_models_module_exits_2_before_starting_a_server(module_model, bentoml_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_") or k.startswith("VIGIL_TEST_")}
    env.update(PYTHONPATH=str(ROOT), BENTOML_HOME=str(bentoml_home), BENTOML_DO_NOT_TRACK="True")
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve", module_model["tag"], "--port",
                           str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and f"needs the module {module_model['module']!r}" in line
    assert f"PYTHONPATH={module_model['dir']}" in line


def test_vigil_serve_passes_the_server_an_absolute_pythonpath(module_model, monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr("os.execvpe", lambda path, cmd, env: started.append(env))
    monkeypatch.chdir(module_model["dir"].parent)
    monkeypatch.setenv("PYTHONPATH", module_model["dir"].name)  # relative, as a user types it
    monkeypatch.syspath_prepend(str(module_model["dir"]))
    try:
        r = CliRunner().invoke(app, ["serve", module_model["tag"], "--port", "0"])
    finally:
        sys.modules.pop(module_model["module"], None)
    assert r.exit_code == 0, r.output
    (env,) = started
    assert env["PYTHONPATH"] == str(module_model["dir"])  # the server changes to the project root
