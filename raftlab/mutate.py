"""``raftlab mutate``: the mutation score, i.e. how many seeded bugs a campaign or simulation catches.

Theory of operation. For each mutant of the catalogue (raftlab/mutants.py) the shell

1. copies the installed source of every raftlab package (raftlab, raftlab.impl, raftlab.checker,
   raftlab.nemesis, raftlab.workloads, found with ``importlib``, so an editable install's
   ``impl/`` -> ``raftlab.impl`` mapping is followed) into a fresh temporary directory laid out
   as a plain ``raftlab/`` package, and applies the mutant's patch to the copy;
2. runs each chosen method as a subprocess whose ``PYTHONPATH`` starts with that directory and
   whose working directory is that directory. ``PYTHONPATH`` entries come before site-packages
   and before the editable install's finder (appended to ``sys.meta_path``), so the subprocess,
   and every node process a campaign starts (the local lab runs ``sys.executable`` with the
   inherited environment), imports the mutant. Before the first method the shell asks a
   subprocess where ``raftlab.impl`` comes from and refuses to go on unless it is the copy.
3. deletes the copy. The working tree is never written: a crash or Ctrl-C leaves at most a
   temporary directory, never a patched file.

Methods: ``sim`` hunts with the simulator (``raftlab sim --budget S --swarm``, raftlab/sim/hunt.py)
and runs only for mutants of code the simulator executes; ``campaign`` runs ``raftlab run`` with
the given arguments (by default the README's main job). A mutant is *caught* by a method when it
returns a violation (exit 1: an invalid history, an invariant, a cluster that never recovered);
*missed* when the verdict is valid or unknown; *error* when the run could not complete (exit 2),
which is reported and never counted as caught. Time to catch is the wall time of the method's
run (a campaign's verdict comes only at its end; a hunt stops at the first failing seed; with
``campaign_runs`` > 1 the campaigns of seeds seed, seed+1, ... run until one catches the mutant,
and their times add up).
Every seed is recorded in the JSON results; the same seed is used for every mutant, so scores
of two catalogues or two campaigns are comparable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from raftlab.mutants import Mutant, patch

PACKAGES = ("raftlab", "raftlab.impl", "raftlab.checker", "raftlab.nemesis", "raftlab.workloads")
# the README's `./dev campaign` (dev runs `raftlab run` with exactly these arguments; a test checks)
DEFAULT_CAMPAIGN = ("--workload mixed --nemesis kill,pause,partition,kill-leader,pause-leader,partition-leader,"
                    "kill-majority,kill-leader-uncommitted,partition-leader-uncommitted,stale-candidate "
                    "--swarm --interval 2 --rate 200 --time-limit 60 --restart-check")
METHODS = ("sim", "campaign")


class MutateError(Exception):
    """The mutation run cannot go on (a package not found, isolation not in effect); names why."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MutateError(f"cannot find the source of package {name}")
    return Path(next(iter(spec.submodule_search_locations)))


def module_file(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


@contextlib.contextmanager
def patched_tree(mutant: Mutant | None, parent: str | None = None) -> Iterator[Path]:
    """A temporary copy of raftlab's source with ``mutant`` applied (None: unmutated); removed after."""
    root = Path(tempfile.mkdtemp(prefix=f"raftlab-mutant-{mutant.id if mutant else 'none'}-", dir=parent))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in PACKAGES:
            shutil.copytree(_package_dir(name), root.joinpath(*name.split(".")), ignore=ignore,
                            dirs_exist_ok=True)
        if mutant is not None:
            target = module_file(root, mutant.module)
            target.write_text(patch(target.read_text(encoding="utf-8"), mutant), encoding="utf-8")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def tree_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_isolation(root: Path) -> None:
    """Refuse to run unless a subprocess with this environment imports raftlab.impl from ``root``."""
    out = subprocess.run([sys.executable, "-c", "import raftlab.impl, raftlab.mutants; print(raftlab.impl.__file__)"],
                         cwd=root, env=tree_env(root), capture_output=True, text=True, timeout=60)
    where = out.stdout.strip()
    if out.returncode != 0 or not Path(where).resolve().is_relative_to(root.resolve()):
        raise MutateError(f"isolation not in effect: raftlab.impl imports from {where or out.stderr.strip()!r}, "
                          f"not from the patched copy {root}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One method's run on one mutant."""

    method: str
    outcome: str  # caught | missed | error | skipped
    seconds: float
    seed: int
    detail: str = ""  # the violation, or why it was missed / could not run
    replay: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What to run on every mutant; recorded with the results."""

    methods: tuple[str, ...] = METHODS
    seed: int = 1
    sim_budget: float = 60.0
    sim_steps: int = 5000
    campaign_args: str = DEFAULT_CAMPAIGN
    campaign_runs: int = 1  # campaigns per mutant, seeds seed, seed+1, ...; stop at the first catch
    base_port: int = 22000
    store: str = "store/mutate"
    labs_dir: str | None = None

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be some of {', '.join(METHODS)}, not {', '.join(bad) or 'none'}")
        if self.campaign_runs < 1:
            raise ValueError("campaign runs must be at least 1")
        if self.sim_budget <= 0 or self.sim_steps < 1:
            raise ValueError("the simulation budget and steps must be positive")


INTERRUPT_GRACE = 90.0  # seconds a Ctrl-C'd campaign gets to heal, tear down and write results


def _run(cmd: list[str], root: Path, timeout: float, env_extra: dict[str, str] | None = None
         ) -> tuple[int, str, str, float]:
    """Run ``cmd`` in the patched copy. On Ctrl-C the child (same process group, so it got the
    SIGINT too) is given time to heal and tear its cluster down before this re-raises."""
    env = tree_env(root)
    env.update(env_extra or {})
    start = time.monotonic()
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc, _sigterm_as_ctrl_c(proc):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: a campaign heals and tears down as on Ctrl-C
            out, err = _finish(proc)
            return -1, out, f"timed out after {timeout:.0f}s; {err.strip()[-200:]}", time.monotonic() - start
        except KeyboardInterrupt:
            _finish(proc)
            raise
    return proc.returncode, out, err, time.monotonic() - start


@contextlib.contextmanager
def _sigterm_as_ctrl_c(proc: subprocess.Popen[str]) -> Iterator[None]:
    """While ``proc`` runs, a SIGTERM to this process is a Ctrl-C: it is passed on to ``proc``
    (a SIGTERM reaches only us; ``raftlab run`` stops on it as on Ctrl-C, and unlike SIGINT it
    is never ignored: a job started in the background, as CI runs, inherits SIGINT ignored) and
    we wait for it as on Ctrl-C. Without this a ``kill`` of ``raftlab mutate`` left the
    campaign's cluster running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        proc.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=INTERRUPT_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        return proc.communicate()


def run_sim(root: Path, plan: Plan) -> Attempt:
    cmd = [sys.executable, "-m", "raftlab.cli", "sim", "--seed", str(plan.seed), "--steps", str(plan.sim_steps),
           "--swarm", "--budget", str(plan.sim_budget), "--time-limit", "10", "--json"]
    code, out, err, seconds = _run(cmd, root, timeout=plan.sim_budget * 3 + 120)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return Attempt(method="sim", outcome="error", seconds=seconds, seed=plan.seed,
                       detail=f"exit {code}: {(err or out).strip()[-300:]}")
    found = result.get("found") or {}
    detail = result.get("crash") or found.get("explanation", "")
    extra = {"seeds_run": result["seeds_run"], "seeds_per_minute": result.get("seeds_per_minute")}
    return Attempt(method="sim", outcome="missed" if result["valid"] else "caught", seconds=seconds,
                   seed=plan.seed, detail=str(detail)[:500], replay=result.get("replay", ""), extra=extra)


def run_campaigns(root: Path, plan: Plan, mutant_id: str) -> Attempt:
    """Up to ``plan.campaign_runs`` campaigns with consecutive seeds, until one catches the mutant."""
    spent = 0.0
    for n in range(plan.campaign_runs):
        attempt = run_campaign(root, plan, mutant_id, plan.seed + n)
        spent += attempt.seconds
        if attempt.outcome == "caught" or n == plan.campaign_runs - 1:
            return replace(attempt, seconds=spent, extra={**attempt.extra, "runs": n + 1})
    raise AssertionError("unreachable: campaign_runs >= 1")


def run_campaign(root: Path, plan: Plan, mutant_id: str, seed: int) -> Attempt:
    args = shlex.split(plan.campaign_args)
    store = str(Path(plan.store).resolve() / mutant_id)
    cmd = [sys.executable, "-m", "raftlab.cli", "run", *args, "--seed", str(seed), "--quiet",
           "--store", store, "--lab-name", lab_name(), "--base-port", str(plan.base_port)]
    env_extra = {"RAFTLAB_LABS_DIR": plan.labs_dir} if plan.labs_dir else None
    code, out, err, seconds = _run(cmd, root, timeout=_campaign_timeout(args), env_extra=env_extra)
    reasons = [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("- ")]
    outcome = {1: "caught", 0: "missed", 3: "missed"}.get(code, "error")
    detail = "; ".join(reasons)[:500] or (err.strip()[-300:] if outcome == "error" else f"exit {code}")
    return Attempt(method="campaign", outcome=outcome, seconds=seconds, seed=seed, detail=detail,
                   replay=f"raftlab replay {store}/latest", extra={"exit_code": code})


def lab_name() -> str:
    """The local lab every campaign of this mutate process uses (brought down at the end)."""
    return f"mutate-{os.getpid()}"


def _campaign_timeout(args: Sequence[str]) -> float:
    limit = 60.0
    if "--time-limit" in args:
        with contextlib.suppress(ValueError, IndexError):
            limit = float(args[list(args).index("--time-limit") + 1])
    return limit + 300  # setup, healing, recovery wait, final reads, checking


def mutate_one(mutant: Mutant | None, plan: Plan, *, tmp_parent: str | None = None) -> list[Attempt]:
    """Every planned method on one mutant (None: the unmutated baseline), in its own patched copy."""
    name = mutant.id if mutant else "baseline"
    attempts: list[Attempt] = []
    with patched_tree(mutant, tmp_parent) as root:
        check_isolation(root)
        for method in plan.methods:
            if method == "sim":
                if mutant is not None and not mutant.sim:
                    attempts.append(Attempt(method="sim", outcome="skipped", seconds=0.0, seed=plan.seed,
                                            detail=f"the simulator does not run {mutant.module}"))
                else:
                    attempts.append(run_sim(root, plan))
            else:
                attempts.append(run_campaigns(root, plan, name))
    return attempts


def score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Caught / total per method and for either method, over mutants (baseline excluded)."""
    total = len(rows)
    out: dict[str, Any] = {"mutants": total}
    for method in METHODS:
        ran = [r for r in rows if method in r["attempts"]]
        if ran:
            caught = sum(1 for r in ran if r["attempts"][method]["outcome"] == "caught")
            out[method] = {"caught": caught, "of": len(ran)}
    out["either"] = {"caught": sum(1 for r in rows if r["caught"]), "of": total}
    return out


def run(mutants: Sequence[Mutant], plan: Plan, *, out_path: Path | None = None, baseline: bool = False,
        echo: Callable[[str], None] = print, tmp_parent: str | None = None) -> dict[str, Any]:
    """Mutate, run and score; results are rewritten to ``out_path`` after every mutant."""
    results: dict[str, Any] = {"plan": asdict(plan), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "baseline": None, "mutants": []}

    def save() -> None:
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    if baseline:
        attempts = mutate_one(None, plan, tmp_parent=tmp_parent)
        results["baseline"] = {a.method: asdict(a) for a in attempts}
        echo("baseline: " + ", ".join(f"{a.method} {_word(a)} ({a.seconds:.0f}s)" for a in attempts))
        save()
    for mutant in mutants:
        attempts = mutate_one(mutant, plan, tmp_parent=tmp_parent)
        caught = [a for a in attempts if a.outcome == "caught"]
        row = {"id": mutant.id, "layer": mutant.layer, "module": mutant.module, "description": mutant.description,
               "rule": mutant.rule, "attempts": {a.method: asdict(a) for a in attempts if a.outcome != "skipped"},
               "caught": bool(caught),
               "time_to_catch": round(min(a.seconds for a in caught), 2) if caught else None}
        results["mutants"].append(row)
        results["score"] = score(results["mutants"])
        save()
        echo(f"{mutant.id:28} " + "  ".join(f"{a.method}: {_word(a)}" for a in attempts)
             + (f"  (caught in {row['time_to_catch']:.1f}s)" if caught else ""))
    results["score"] = score(results["mutants"])
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    if "campaign" in plan.methods:
        _lab_down(plan)
    return results


def _lab_down(plan: Plan) -> None:
    """Bring the campaigns' local lab down, in the environment the campaigns ran in."""
    env = dict(os.environ, **({"RAFTLAB_LABS_DIR": plan.labs_dir} if plan.labs_dir else {}))
    subprocess.run([sys.executable, "-m", "raftlab.cli", "lab", "down", "--name", lab_name()], env=env,
                   capture_output=True, timeout=120, check=False)


def _word(a: Attempt) -> str:
    return a.outcome if a.outcome != "caught" else f"CAUGHT {a.seconds:.1f}s"


def describe_score(s: dict[str, Any]) -> str:
    parts = [f"{m} {s[m]['caught']}/{s[m]['of']}" for m in (*METHODS, "either") if m in s]
    return "mutation score: " + ", ".join(parts)
