"""Test-install a staged release before publishing it: a fresh virtualenv, pip installing
the release from the stage (``--index-url <stage> --extra-index-url <public index>``, so
dependencies come from the public index), then a smoke command in that environment."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile

OUTPUT_TAIL = 4000


@dataclasses.dataclass
class InstallCheck:
    ok: bool
    command: str
    pip_command: str
    output: str = ""
    stage: str = ""

    def as_json(self) -> dict:
        return {"ok": self.ok, "command": self.command, "pip": self.pip_command, "output": self.output[-OUTPUT_TAIL:]}


def pip_arguments(stages: list[str], public_index: str, requirements: list[str]) -> list[str]:
    """The first stage is the index; the other stages and the public index are extra indexes."""
    args = ["--index-url", stages[0]]
    for url in [*stages[1:], public_index]:
        args += ["--extra-index-url", url]
    return [*args, *requirements]


def pip_line(stages: list[str], public_index: str, requirements: list[str]) -> str:
    return shlex.join(["pip", "install", *pip_arguments(stages, public_index, requirements)])


def _env(venv: str) -> dict[str, str]:
    # Only the stage and the public index may be consulted: no pip configuration file or
    # PIP_* variable may add another index (or turn the install into something else).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
                "VIRTUAL_ENV": venv, "PATH": os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")})
    return env


def run(stages: list[str], public_index: str, requirements: list[str], command: str | None,
        modules: list[str], timeout: float = 900) -> InstallCheck:
    """Install ``requirements`` from the stages, then run ``command`` (a shell command) or,
    without one, import ``modules``; ok only when both succeed."""
    if command:
        shown = command
    else:
        shown = f"python -c {shlex.quote('import ' + ', '.join(modules))}" if modules else "(install only)"
    pip_args = pip_arguments(stages, public_index, requirements)
    result = InstallCheck(ok=False, command=shown, pip_command=pip_line(stages, public_index, requirements))
    # The work directory is empty: the command imports what was installed, not a source tree.
    with tempfile.TemporaryDirectory(prefix="pypi-upload2-test-") as work:
        venv = os.path.join(work, "venv")
        python = os.path.join(venv, "bin", "python")
        env = _env(venv)
        steps = [
            ("create the virtualenv", [sys.executable, "-m", "venv", venv]),
            ("pip install", [python, "-m", "pip", "install", "--no-cache-dir", *pip_args]),
        ]
        if command:
            steps.append(("smoke command", command))
        elif modules:
            steps.append(("import", [python, "-c", "import " + ", ".join(modules)]))
        output = []
        for what, argv in steps:
            try:
                done = subprocess.run(argv, cwd=work, env=env, shell=isinstance(argv, str), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as exc:
                output.append(f"$ {what}: timed out after {timeout:.0f}s\n{exc.output or ''}")
                break
            output.append(f"$ {what}\n{done.stdout}")
            if done.returncode != 0:
                output.append(f"{what} failed (exit status {done.returncode})\n")
                break
        else:
            result.ok = True
        result.output = "".join(output)
    return result
