"""Many runs at once: a study's pending train and evaluate stages as Ray tasks, K per GPU or one per CPU slot.

    python -m cifarlab.tools.sweep [--study NAME] [--address ADDRESS] [--runs-per-gpu K | --slots N]
                                   [--clones DIR]

Every stage still runs through `dvc repro` (upstream stages once, then each pending run's `train@<run>`
and `evaluate@<run>` as one task, then the rest), so the repository ends as `dvc repro` alone would leave
it: one `dvc.lock`, every output cached, the run cache filled. By default every task works in this
repository, which every Ray node must see at the same path; with `--clones DIR` each node trains in its own
clone at this commit and pushes the run cache to the default DVC remote, from which this repository then
restores every run (`dvc repro --pull`).

`--runs-per-gpu K` asks Ray for 1/K of a GPU per task. A small model's step costs its kernel launches, not
its arithmetic, so what K runs sharing a GPU gain is the time one run leaves it idle, bounded by the CPUs
that launch them; only a measurement on the GPU at hand says which K pays (docs/clusters.md). Ray is an
optional extra (`pip install -e ".[ray]"`); nothing else in cifarlab imports it.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.study.resolve import read_study

LOG_DIR = Path("logs/sweep")
OUTCOMES_FILE = LOG_DIR / "outcomes.json"
UPSTREAM_STAGES = ("check-params", "split")  # split pulls in fetch
STOP_GRACE_S = 60  # for a stopped run to save its state; an epoch's state is saved already, so this is ample
DEFAULT_CPU_SLOTS_AT_MOST = 8  # each CPU run is a process of its own, with torch and its split in memory
RAY_RESOURCE_STEPS = 10_000  # Ray counts a fractional resource in steps of 0.0001


@dataclass
class Outcome:
    run: str
    status: str  # done | failed
    returncode: int
    device: str
    cuda_visible_devices: str | None  # as Ray set it for the task, and its processes inherit it
    host: str
    queued_s: float  # from submitting the task to its process starting on a node
    started_at: float  # seconds since the epoch, on the node's clock
    seconds: float  # the task's `dvc repro` (and, with --clones, its clone and DVC transfers)
    log: str


def dvc(*args: str) -> list[str]:
    """DVC from this interpreter's environment: the one Ray's workers run."""
    return [sys.executable, "-m", "dvc", *args]


def run_checked(cmd: Sequence[str], what: str) -> None:
    shown = ["dvc", *cmd[3:]] if list(cmd[:3]) == dvc() else cmd
    print(f"$ {' '.join(shown)}", flush=True)
    result = subprocess.run(list(cmd))
    if result.returncode != 0:
        raise CifarlabError(f"{what}: `{' '.join(shown)}` exited {result.returncode}")


def pending_runs(run_names: Sequence[str]) -> list[str]:
    """The runs among `run_names` whose train or evaluate stage `dvc status` reports as changed."""
    result = subprocess.run(dvc("status", "--json"), capture_output=True, text=True)
    if result.returncode != 0:
        raise CifarlabError(f"dvc status: exited {result.returncode}: {result.stderr.strip()}")
    changed = set(json.loads(result.stdout or "{}"))
    return [name for name in run_names if f"train@{name}" in changed or f"evaluate@{name}" in changed]


def gpu_share(runs_per_gpu: int) -> float:
    """1/K of a GPU, rounded down to Ray's resolution of 0.0001, so that K shares fit in one GPU however Ray
    rounds (to the nearest step, seven shares of 0.1429 would not, and only six runs would share it)."""
    return math.floor(RAY_RESOURCE_STEPS / runs_per_gpu) / RAY_RESOURCE_STEPS


def slot_plan(resources: dict[str, float], slots: int | None,
              runs_per_gpu: int | None = None) -> tuple[dict[str, float], int, str]:
    """Ray resources per task, torch threads per task, and what each run gets, from the cluster's totals.

    With GPUs, `runs_per_gpu` tasks (default 1) share each GPU and its CPUs; without, `slots` tasks share
    the CPUs."""
    cpus = int(resources.get("CPU", 1))
    gpus = int(resources.get("GPU", 0))
    if gpus:
        if slots is not None:
            raise CifarlabError("--slots: the cluster has GPUs, and the sweep runs --runs-per-gpu tasks on each "
                                "(default 1); leave --slots out (or hide GPUs with CUDA_VISIBLE_DEVICES= to run "
                                "on CPUs)")
        runs_per_gpu = runs_per_gpu or 1
        # Each run's step loop is a thread of its own that launches kernels; a run without a core stalls its GPU.
        most = max(1, cpus // gpus)
        if runs_per_gpu > most:
            raise CifarlabError(f"--runs-per-gpu: expected 1 to {most} (the cluster's {cpus} CPUs over its {gpus} "
                                f"GPUs: each run needs a CPU of its own), got {runs_per_gpu}")
        threads = max(1, cpus // (gpus * runs_per_gpu))
        if runs_per_gpu == 1:
            return {"num_gpus": 1, "num_cpus": 1}, threads, "a GPU"
        return {"num_gpus": gpu_share(runs_per_gpu), "num_cpus": 1}, threads, f"1/{runs_per_gpu} of a GPU"
    if runs_per_gpu is not None:
        raise CifarlabError("--runs-per-gpu: the cluster has no GPU; use --slots N for N runs at once on its CPUs")
    slots = slots if slots is not None else min(cpus, DEFAULT_CPU_SLOTS_AT_MOST)
    if not 1 <= slots <= cpus:
        raise CifarlabError(f"--slots: expected 1 to {cpus} (the cluster's CPUs), got {slots}")
    # A fractional CPU request lets exactly `slots` tasks run at once whatever the cluster's size.
    return {"num_cpus": cpus / slots}, max(1, cpus // slots), "a CPU slot"


# --- what runs on a node ----------------------------------------------------------------------------------

def _receive_sigint() -> None:
    # Ray's workers block SIGINT, and a child inherits its parent's blocked and ignored signals.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_stopping_on_cancel(cmd: Sequence[str], log: Path, cwd: Path, env: dict[str, str]) -> int:
    """Run `cmd`, its output appended to `log`; if the sweep cancels this task, interrupt the command's
    whole process group (`dvc repro` and the training under it) as Ctrl-C would: training saves its state
    and exits, DVC releases its locks, and the next sweep resumes the run."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_receive_sigint)
        try:
            while True:
                try:
                    return proc.wait(timeout=1)  # short waits: Ray's cancellation arrives between them
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise


class NodeSetupError(RuntimeError):
    def __init__(self, message: str, log: Path):
        super().__init__(message)
        self.log = log


def prepare_clone(clones: Path, remote_url: str, commit: str) -> Path:
    """This node's clone of the repository at `commit`, with its upstream stages restored or run; one task
    per node prepares it while the node's other tasks wait on the lock file."""
    clones.mkdir(parents=True, exist_ok=True)
    clone = clones / commit[:12]
    with open(clones / f"{commit[:12]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (clone / ".prepared").exists():
            shutil.rmtree(clone, ignore_errors=True)
            log = clones / f"{commit[:12]}.prepare.log"
            with open(log, "w") as out:
                for cmd, cwd in ((["git", "clone", "--quiet", remote_url, str(clone)], clones),
                                 (["git", "checkout", "--quiet", "--detach", commit], clone),
                                 (dvc("repro", "--pull", *UPSTREAM_STAGES), clone)):
                    if subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                        raise NodeSetupError(f"{' '.join(cmd)} failed on {socket.gethostname()}", log)
            (clone / ".prepared").touch()
    return clone


def push_uncached_outputs(clone: Path, stages: Sequence[str]) -> None:
    """Send the objects of the stages' outputs that git keeps (`cache: false` metrics and plots, a run's
    DVCLive folder among them) to the DVC remote. The run cache records them, but `dvc push --run-cache` sends
    only the objects of cached outputs, and without these the head would train the run again. DVC has no
    command for it, hence its API."""
    from dvc.repo import Repo, lock_repo
    from dvc_data.hashfile.tree import Tree

    # Under DVC's lock, as `dvc --wait-for-lock` takes it: another task of this node may be writing dvc.lock.
    with Repo(str(clone), _wait_for_lock=True) as repo, lock_repo(repo):
        stages_here = [stage for name in stages for stage in repo.stage.collect(f"{clone / 'dvc.yaml'}:{name}")]
        outs = [out for stage in stages_here for out in stage.outs if not out.use_cache]
        # A folder's object only lists its files: DVC sends the files it is given alongside it, no others.
        objects = {out.hash_info for out in outs}
        objects |= {oid for out in outs if out.hash_info.isdir for _, _, oid in Tree.load(out.cache, out.hash_info)}
        repo.cloud.push(objects)


def train_and_evaluate(run: str, root: str, threads: int, submitted: float, progress: Any,
                       clones: str | None, remote_url: str, commit: str) -> dict[str, Any]:
    """One Ray task: `dvc repro` of one run's train and evaluate stages."""
    import ray  # only on the nodes, where Ray is what runs this

    started = time.time()
    host = socket.gethostname()
    gpu_ids = ray.get_gpu_ids()
    device = f"GPU {','.join(str(g) for g in gpu_ids)}" if gpu_ids else f"CPU ({threads} threads)"
    progress.put((run, f"running on {device} ({host})"))
    # Inductor's compile pool would start one worker per CPU of the node in every run: its share instead.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TORCHINDUCTOR_COMPILE_THREADS": str(threads)}
    try:
        cwd = prepare_clone(Path(clones), remote_url, commit) if clones else Path(root)
        log = (cwd / LOG_DIR / f"{run}.log").resolve()
        stages = [f"train@{run}", f"evaluate@{run}"]
        returncode = run_stopping_on_cancel(dvc("--wait-for-lock", "repro", "--single-item", *stages), log, cwd, env)
        if returncode == 0 and clones:
            returncode = run_stopping_on_cancel(dvc("--wait-for-lock", "push", "--run-cache", *stages), log, cwd, env)
            if returncode == 0:
                try:
                    push_uncached_outputs(cwd, stages)
                except Exception as exc:  # noqa: BLE001  (any failure of the push fails this run only)
                    with open(log, "a") as out:
                        out.write(f"pushing the metrics and plots kept in git failed: {exc!r}\n")
                    returncode = 1
    except NodeSetupError as exc:
        log, returncode = exc.log, 1
    outcome = Outcome(run=run, status="done" if returncode == 0 else "failed", returncode=returncode,
                      device=device, cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), host=host,
                      queued_s=round(started - submitted, 3), started_at=started,
                      seconds=round(time.time() - started, 3), log=str(log))
    progress.put((run, f"{outcome.status} in {outcome.seconds:.0f} s" + (f", see {log}" if returncode else "")))
    return asdict(outcome)


# --- the head ---------------------------------------------------------------------------------------------

def git_output(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise CifarlabError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.rstrip()  # `git status --porcelain` lines may start with a space


def check_clones_mode() -> tuple[str, str]:
    """The git remote's URL and the commit the clones check out; refuses what a clone would not see."""
    changed = [line[3:] for line in git_output("status", "--porcelain", "--untracked-files=no").splitlines()
               if line[3:] != "dvc.lock"]
    if changed:
        raise CifarlabError(f"--clones: the clones check out the last commit, and these files differ from it: "
                            f"{', '.join(changed)}; commit and push first")
    remote = subprocess.run(dvc("remote", "default"), capture_output=True, text=True).stdout.strip()
    if not remote:
        raise CifarlabError("--clones: the runs travel through the default DVC remote, and none is set; "
                            "`dvc remote add -d NAME URL`, commit .dvc/config and push")
    url = git_output("remote", "get-url", "origin")
    commit = git_output("rev-parse", "HEAD")
    if not git_output("branch", "--remotes", "--contains", commit):
        raise CifarlabError(f"--clones: commit {commit[:12]} is not on the git remote origin ({url}); push it")
    return url, commit


def report_progress(progress: Any, total: int, finished: list[str]) -> None:
    while not progress.empty():
        run, message = progress.get()
        if message.startswith(("done", "failed")):
            finished.append(run)
        print(f"[{len(finished)}/{total}] {run}: {message}", flush=True)


def train_on_ray(pending: list[str], args: argparse.Namespace, ray_init: Callable[..., Any] | None,
                 clones: str | None, remote_url: str, commit: str) -> list[dict[str, Any]]:
    """Each pending run as a Ray task; the outcomes, in the order the runs finished."""
    import ray
    from ray.util.queue import Queue

    sigterm_before = signal.getsignal(signal.SIGTERM)
    (ray_init or ray.init)(**({"address": args.address} if args.address else {}))
    # Ray replaces the SIGTERM handler; a scheduler ends a job with SIGTERM, which must stop it as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        resources, threads, share = slot_plan(ray.cluster_resources(), args.slots, args.runs_per_gpu)
        print(f"Ray: {ray.cluster_resources().get('GPU', 0):.0f} GPUs, "
              f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs; each run on {share}, {threads} torch threads")
        task = ray.remote(max_retries=0, **resources)(train_and_evaluate)
        progress = Queue()
        root = str(Path.cwd())
        futures = {task.remote(name, root, threads, time.time(), progress, clones, remote_url, commit): name
                   for name in pending}
        for name in pending:
            print(f"[0/{len(pending)}] {name}: queued", flush=True)
        finished: list[str] = []
        outcomes = []
        remaining = list(futures)
        try:
            while remaining:
                ready, remaining = ray.wait(remaining, timeout=1.0)
                report_progress(progress, len(pending), finished)
                for ref in ready:
                    try:
                        outcomes.append(ray.get(ref))
                    except ray.exceptions.RayError as exc:  # the task itself broke (a node lost, say)
                        print(f"{futures[ref]}: the task failed: {exc}", file=sys.stderr)
                        outcomes.append({"run": futures[ref], "status": "failed", "error": str(exc)})
                        finished.append(futures[ref])
        except KeyboardInterrupt:
            # Cancelling a running task interrupts its run, which saves its state; wait until they have.
            for ref in remaining:
                ray.cancel(ref)
            ray.wait(remaining, num_returns=len(remaining), timeout=STOP_GRACE_S + 10)
            raise
        time.sleep(0.2)  # the last messages may still be in flight
        report_progress(progress, len(pending), finished)
        return outcomes
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm_before)


def main(argv: Sequence[str] | None = None, ray_init: Callable[..., Any] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.tools.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="only this study's runs (default: every run)")
    parser.add_argument("--address", help="a running Ray cluster (ray start --head); default: start one here")
    parser.add_argument("--runs-per-gpu", type=int, metavar="K",
                        help="runs sharing each GPU at once, the CPUs split between them (default: 1)")
    parser.add_argument("--slots", type=int, help="runs at once where there is no GPU (default: one per CPU "
                                                  f"core, at most {DEFAULT_CPU_SLOTS_AT_MOST})")
    parser.add_argument("--clones", type=Path, help="separate machines: each node works in a clone under this "
                                                    "folder and sends its runs through the DVC remote")
    args = parser.parse_args(argv)
    try:
        return sweep(args, ray_init)
    except CifarlabError as exc:  # a user error, as in every stage: one line, exit status 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped: each run in training saved its last epoch, and the next sweep continues from there",
              file=sys.stderr)
        return 130


def sweep(args: argparse.Namespace, ray_init: Callable[..., Any] | None) -> int:
    if args.slots is not None and args.slots < 1:
        raise CifarlabError(f"--slots: expected 1 or more runs at once, got {args.slots}")
    if args.runs_per_gpu is not None and args.runs_per_gpu < 1:
        raise CifarlabError(f"--runs-per-gpu: expected 1 or more runs on each GPU, got {args.runs_per_gpu}")
    study = read_study()
    names = [run.name for run in study.runs.values() if args.study in (None, run.study)]
    if args.study and not names:
        raise CifarlabError(f"--study: no run of params.yaml is in study {args.study!r} "
                            f"(studies: {', '.join(sorted({run.study for run in study.runs.values()}))})")
    if importlib.util.find_spec("ray") is None:
        raise CifarlabError('the sweep runs on Ray, which is not installed: pip install -e ".[ray]"')
    remote_url, commit = check_clones_mode() if args.clones else ("", "")
    clones = str(args.clones.expanduser()) if args.clones else None

    run_checked(dvc("repro", *UPSTREAM_STAGES), what="the upstream stages")
    if args.clones:
        # The clones restore these stages from the DVC remote rather than fetching the data again.
        run_checked(dvc("push", "--run-cache", "fetch", "split"), what="dvc push of the upstream stages")
    pending = pending_runs(names)
    print(f"{len(pending)} of {len(names)} runs to train" + (f": {', '.join(pending)}" if pending else ""))

    failed: list[str] = []
    if pending:
        outcomes = train_on_ray(pending, args, ray_init, clones, remote_url, commit)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        OUTCOMES_FILE.write_text(json.dumps(outcomes, indent=2) + "\n")
        failed = [o["run"] for o in outcomes if o["status"] != "done"]

    if failed:
        where = f"{LOG_DIR}/<run>.log" if not clones else f"{LOG_DIR}/<run>.log of the node's clone"
        print(f"error: {len(failed)} of {len(pending)} runs failed: {', '.join(failed)} (see {where}); the "
              "other runs are saved, and the next sweep trains only what is still pending", file=sys.stderr)
        return 1
    others = pending_runs([run for run in study.runs if run not in names]) if args.study else []
    if others:
        print(f"{len(others)} runs of other studies are still pending ({', '.join(others)}); "
              "the stages after training wait for them: sweep those studies or `dvc repro`")
        return 0
    # With --clones, --pull restores every run from the run cache the nodes pushed; nothing trains here.
    run_checked(dvc("repro", "--pull") if args.clones else dvc("repro"), what="the stages after training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
