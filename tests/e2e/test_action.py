"""The composite GitHub Action (``action.yml``): its steps' ``run:`` scripts, run with bash as
a runner runs them (``${{ ... }}`` substituted, a ``GITHUB_OUTPUT`` file per step), against a
real server process. The ``install`` step is skipped: the test virtualenv has the client, and
an empty ``steps.install.outputs.bin`` makes the other steps find it on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import httpx
import pytest
import yaml

from tests.conftest import build_sdist, build_wheel
from tests.e2e.test_client_upload import ROOT, SIMPLE_JSON, client_env, published
from tests.e2e.test_pip import Venv

BIN = os.path.dirname(sys.executable)
ACTION = os.path.join(ROOT, "action.yml")
EXPRESSION = re.compile(r"\$\{\{\s*(?:inputs\.([\w-]+)|steps\.([\w-]+)\.outputs\.([\w-]+))\s*\}\}")
SKIPPED = {"install"}  # step ids this runner does not run


def load() -> dict:
    with open(ACTION) as f:
        return yaml.safe_load(f)


class Run:
    """One use of the action: its outputs, and each step's exit status and output."""

    def __init__(self, outputs: dict, steps: dict[str, subprocess.CompletedProcess]):
        self.outputs, self.steps = outputs, steps
        self.returncode = next((s.returncode for s in steps.values() if s.returncode), 0)
        self.log = "".join(s.stdout + s.stderr for s in steps.values())


def use_action(tmp_path, inputs: dict[str, str], env: dict | None = None) -> Run:
    """Run the action's steps in order, as a runner does, until one fails."""
    action = load()
    values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    assert set(inputs) <= set(values), set(inputs) - set(values)
    missing = [n for n, spec in action["inputs"].items() if spec.get("required") and n not in inputs]
    assert not missing, missing
    values.update(inputs)
    outputs: dict[str, dict[str, str]] = {}

    def substitute(text: str) -> str:
        def value(match):
            name, step, output = match.groups()
            return values[name] if name else outputs.get(step, {}).get(output, "")

        result = EXPRESSION.sub(value, str(text))
        assert "${{" not in result, f"an expression this runner does not know: {text}"
        return result

    temp = tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    base = client_env(tmp_path, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), RUNNER_TEMP=str(temp),
                      **(env or {}))
    steps = {}
    for n, step in enumerate(action["runs"]["steps"]):
        # Only what this runner honours: a plain bash step (no ``if:``, no ``uses:``).
        assert set(step) <= {"id", "name", "shell", "env", "run"} and step["shell"] == "bash", step
        if step["id"] in SKIPPED:
            continue
        output = tmp_path / f"github-output-{n}"
        output.write_text("")
        script = tmp_path / f"step-{n}.sh"
        script.write_text(substitute(step["run"]))
        step_env = {**base, **{k: substitute(v) for k, v in (step.get("env") or {}).items()},
                    "GITHUB_OUTPUT": str(output)}
        # The command line of ``shell: bash`` on a runner.
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=step_env,
                              capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        steps[step["id"]] = done
        lines = output.read_text().splitlines()
        assert all("=" in line and "<<" not in line.split("=")[0] for line in lines), lines
        outputs[step["id"]] = dict(line.split("=", 1) for line in lines)
        if done.returncode:
            break
    return Run({name: substitute(spec["value"]) for name, spec in action["outputs"].items()}, steps)


def session_status(url: str, token: str) -> str:
    reply = httpx.get(url, auth=("__token__", token))
    assert reply.status_code == 200, reply.text
    return reply.json()["status"]


def test_the_inputs_and_outputs_are_the_peps_and_the_install_step_installs_the_client():
    action = load()
    assert action["runs"]["using"] == "composite"
    assert {"stage", "publish-session", "cancel-session", "repository-url", "token", "packages-dir"} \
        <= set(action["inputs"])
    assert set(action["outputs"]) == {"stage-url", "session-id"}
    with open(os.path.join(ROOT, "client", "pyproject.toml"), "rb") as f:
        name = tomllib.load(f)["project"]["name"]
    install = next(s for s in action["runs"]["steps"] if s["id"] == "install")
    assert f"pip install --quiet --disable-pip-version-check {name}\n" in install["run"]
    assert [s["id"] for s in action["runs"]["steps"]][0] == "install"


def test_stage_then_install_from_the_stage_then_publish_session(server, make_user, dist_dir, tmp_path):
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "action-demo", "1.0", module_source="VALUE = 'staged by the action'\n")
    sdist = build_sdist(dist_dir, "action-demo", "1.0")
    inputs = {"repository-url": f"{server}/legacy/", "token": token, "packages-dir": str(dist_dir)}

    staged = use_action(tmp_path, {**inputs, "stage": "true"})
    assert staged.returncode == 0, staged.log
    session, stage = staged.outputs["session-id"], staged.outputs["stage-url"]
    assert session.startswith(f"{server}/2.0/sessions/") and stage.startswith(f"{server}/2.0/stage/")
    assert "action-demo 1.0 is staged, not published" in staged.log  # the client's messages are in the log
    assert session_status(session, token) == "open"
    assert published(server, "action-demo") == {}

    # The test job of the PEP's workflow: pip, from the stage URL, without credentials.
    venv = Venv(tmp_path / "venv")
    venv.install(stage, "action-demo==1.0")
    assert venv.run("import action_demo; print(action_demo.VALUE)").stdout.strip() == "staged by the action"

    done = use_action(tmp_path, {**inputs, "publish-session": session})
    assert done.returncode == 0, done.log
    assert done.outputs == {"session-id": "", "stage-url": ""}
    assert published(server, "action-demo") == {wheel.name: wheel.read_bytes(), sdist.name: sdist.read_bytes()}
    assert session_status(session, token) == "published"
    # A re-run of the publish job is no error.
    assert use_action(tmp_path, {**inputs, "publish-session": session}).returncode == 0


def test_cancel_session_cancels_every_staged_release(server, make_user, dist_dir, tmp_path):
    token = make_user("alice")
    build_wheel(dist_dir, "action-one", "1.0")
    build_wheel(dist_dir, "action-two", "2.0")
    inputs = {"repository-url": f"{server}/legacy/", "token": token, "packages-dir": str(dist_dir)}
    staged = use_action(tmp_path, {**inputs, "stage": "true"})
    assert staged.returncode == 0, staged.log
    sessions, stages = staged.outputs["session-id"].split(), staged.outputs["stage-url"].split()
    assert len(sessions) == len(stages) == 2

    done = use_action(tmp_path, {**inputs, "cancel-session": staged.outputs["session-id"]})
    assert done.returncode == 0, done.log
    assert [session_status(url, token) for url in sessions] == ["canceled", "canceled"]
    assert [httpx.get(url).status_code for url in stages] == [404, 404]
    assert httpx.get(f"{server}/simple/action-one/", headers=SIMPLE_JSON).status_code == 404


def test_without_stage_the_release_is_published(server, make_user, dist_dir, tmp_path):
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "action-now", "1.0")
    done = use_action(tmp_path, {"repository-url": f"{server}/legacy/", "token": token,
                                 "packages-dir": str(dist_dir)})
    assert done.returncode == 0, done.log
    assert done.outputs["stage-url"] == "" and session_status(done.outputs["session-id"], token) == "published"
    assert published(server, "action-now") == {wheel.name: wheel.read_bytes()}


def test_credentials_may_come_from_the_environment(server, make_user, dist_dir, tmp_path):
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "action-env", "1.0")
    done = use_action(tmp_path, {"repository-url": f"{server}/legacy/", "packages-dir": str(dist_dir)},
                      env={"TWINE_USERNAME": "__token__", "TWINE_PASSWORD": token})
    assert done.returncode == 0, done.log
    assert published(server, "action-env") == {wheel.name: wheel.read_bytes()}


def test_a_failed_upload_fails_the_step_and_leaves_nothing_to_act_on(server, make_user, dist_dir, tmp_path):
    build_wheel(dist_dir, "action-fail", "1.0")
    done = use_action(tmp_path, {"repository-url": f"{server}/legacy/", "token": "pypi-upload2-1-wrong",
                                 "packages-dir": str(dist_dir), "stage": "true"})
    assert done.returncode == 1, done.log
    assert done.outputs == {"session-id": "", "stage-url": ""}


@pytest.mark.parametrize(("inputs", "message"), [
    ({"publish-session": "https://a/", "cancel-session": "https://b/"},
     "publish-session and cancel-session exclude each other"),
    ({"publish-session": "https://a/", "stage": "true"},
     "stage uploads; it does not go with publish-session or cancel-session"),
    ({"stage": "yes"}, "stage is true or false, not 'yes'"),
])
def test_contradicting_inputs_are_refused(tmp_path, inputs, message):
    done = use_action(tmp_path, {"repository-url": "http://127.0.0.1:9/legacy/", **inputs})
    assert done.returncode == 2 and f"::error::{message}" in done.log
