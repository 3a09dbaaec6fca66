"""Plant small, realistic bugs one at a time and check that the tests written for them fail.

Each bug is a textual patch (exact text replaced by other text) applied to a COPY of the
working tree in a temporary directory; the worktree itself is never edited. For each bug
the relevant tests run in the copy (``PYTHONPATH`` and the working directory point at it,
so servers started by tests/support/server.py run the planted code too) and the script
prints ``caught`` (a test failed), ``missed`` (every test passed) or ``error`` (pytest
could not run them, or the patch no longer applies: the code moved and the bug must be
re-planted). Before planting, the same tests run once on the unchanged copy: a test that
already fails would "catch" everything.

    .venv/bin/python benchmarks/planted_bugs.py [--runs 3] [--only js-factor,outbox-lease] [--no-baseline]
    make planted-bugs PLANTED_ARGS="--runs 3"

Exit status 0 only when every bug is caught in every run. The Postgres variants of the
store tests run when ``VIGIL_TEST_POSTGRES_URL`` is set (it is passed through). The e2e
bugs (the 500 body, the chunked body) start real servers: about a minute together.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (path, exact old text, new text)
    tests: tuple[str, ...]                   # pytest arguments (files, node ids, -k ...)


# the acknowledgement planted inside ingest_group (bugs ack-in-tx and ack-early): the committer
# hands its futures to the store, which answers each batch before the transaction commits
_ACK_COMMITTER = ("monitoring/runtime/committer.py",
                  "results = self.store.outcomes.ingest_group(self.model, [items for items, _ in group], time.time())",
                  ("results = self.store.outcomes.ingest_group(self.model, [items for items, _ in group], time.time(),"
                   " acks=[f for _, f in group])"))
_ACK_SIGNATURE = ("monitoring/store/outcomes.py",
                  "def ingest_group(self, model: str, batches: list[list[OutcomeIn]], now: float) -> list:",
                  "def ingest_group(self, model: str, batches: list[list[OutcomeIn]], now: float, acks=None) -> list:")
_ACK_LOOP_END = """                        if attempt:         # (a database without the lock): decided again, it is seen
                            raise
        return out"""

COMMITTER_TESTS = ("tests/monitoring/runtime/test_committer.py",)
DRIFT_TESTS = ("tests/monitoring/stats/test_drift.py",)

BUGS = (
    Bug("sqlite-sync-off", "SQLite synchronous=OFF",
        (("monitoring/store/database.py", 'cur.execute("PRAGMA synchronous=FULL")',
          'cur.execute("PRAGMA synchronous=OFF")'),),
        ("tests/monitoring/store/test_store_facade.py",)),
    Bug("ack-in-tx", "feedback acknowledged inside the transaction, before COMMIT",
        (_ACK_COMMITTER, _ACK_SIGNATURE,
         ("monitoring/store/outcomes.py", _ACK_LOOP_END, _ACK_LOOP_END.replace(
             "        return out",
             "            for fut, res in zip(acks or [], out):\n"
             "                fut.set_result(res)\n"
             "        return out"))),
        COMMITTER_TESTS),
    Bug("ack-early", "feedback acknowledged 20 ms before COMMIT",
        (_ACK_COMMITTER, _ACK_SIGNATURE,
         ("monitoring/store/outcomes.py", _ACK_LOOP_END, _ACK_LOOP_END.replace(
             "        return out",
             "            for fut, res in zip(acks or [], out):\n"
             "                fut.set_result(res)\n"
             "            time.sleep(0.02)\n"
             "        return out"))),
        COMMITTER_TESTS),
    Bug("failure-to-one-waiter", "a failed group commit reported to its first waiter only",
        (("monitoring/runtime/committer.py", """                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)""", """                for _, fut in group[:1]:
                    if not fut.done():
                        fut.set_exception(exc)"""),),
        COMMITTER_TESTS),
    Bug("effect-floor", "drift effect floor removed",
        (("monitoring/stats/evaluate.py", "flagged = bool(ph <= cfg.alpha and effect >= cfg.effect_floor)",
          "flagged = bool(ph <= cfg.alpha)"),),
        DRIFT_TESTS),
    Bug("js-factor-9", "Jensen-Shannon p-value factor 8 -> 9 (liberal)",
        (("monitoring/stats/drift.py", "_js_divergence, 8.0,", "_js_divergence, 9.0,"),),
        DRIFT_TESTS),
    Bug("js-factor-7", "Jensen-Shannon p-value factor 8 -> 7 (conservative)",
        (("monitoring/stats/drift.py", "_js_divergence, 8.0,", "_js_divergence, 7.0,"),),
        DRIFT_TESTS),
    Bug("band-at-all-rows", "performance band computed at all rows instead of the labelled ones",
        (("monitoring/stats/performance.py", "band = baseline.band(labelled)", "band = baseline.band(n)"),),
        ("tests/monitoring/stats/test_performance.py",)),
    Bug("message-in-500", "the exception's message put into the 500 body",
        (("service/app.py", 'f"the model failed on this batch ({type(exc).__name__})"',
          'f"the model failed on this batch ({type(exc).__name__}: {exc})"'),),
        ("tests/e2e/test_serve.py", "-k", "model_that_raises or model_errors_on_the_event_loop")),
    Bug("outbox-lease", "outbox lease not re-checked in the UPDATE",
        (("monitoring/store/alerts.py", """                    outbox.c.id == i, outbox.c.delivered_at.is_(None), outbox.c.failed.is_(False),
                    or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)))""",
          """                    outbox.c.id == i, outbox.c.delivered_at.is_(None), outbox.c.failed.is_(False)))"""),),
        ("tests/monitoring/runtime/test_notify.py",)),
    Bug("holm-removed", "Holm's correction removed",
        (("monitoring/stats/evaluate.py", "p_holm = D.holm([r[2].p_value for r in raw])",
          "p_holm = [r[2].p_value for r in raw]"),),
        DRIFT_TESTS),
    Bug("bootstrap-no-ref-error", "reference sampling error dropped from the bootstrap null",
        (("monitoring/stats/drift.py",
          "r = rng.multinomial(n_ref, ref_props, size=self.draws).astype(np.float64)",
          "r = np.tile(ref_props * n_ref, (self.draws, 1))"),),
        DRIFT_TESTS),
    Bug("span-drop-uncounted", "spans dropped at a full export queue without being counted",
        (("service/telemetry.py", """                drops.add("spans", 1)
                full_log.note()""", """                full_log.note()"""),),
        ("tests/e2e/test_telemetry_faults.py",)),
    Bug("429-not-retried", "a webhook's 429 (rate limited) treated as permanent",
        (("monitoring/runtime/notifier.py", "retryable = r.status_code in (408, 429) or r.status_code >= 500",
          "retryable = r.status_code == 408 or r.status_code >= 500"),),
        ("tests/monitoring/runtime/test_notify.py",)),
    Bug("log-sampling-ignored", "VIGIL_LOG_SAMPLE_RATE below 1 keeps every row's features",
        (("monitoring/runtime/predlog.py", "keep = sampled is None or sampled[i]", "keep = True"),),
        ("tests/monitoring/runtime/test_predlog.py",)),
    Bug("threshold-ignored", "VIGIL_DECISION_THRESHOLD ignored by the adapter",
        (("models/adapters.py", "        if self.decision_threshold is not None:\n            labels",
          "        if False:\n            labels"),),
        ("tests/models/test_registry.py", "-k", "decision_threshold")),
    Bug("chunked-not-counted", "a chunked body not counted against the size limit",
        (("service/middleware.py", "        size += len(body)\n", ""),),
        ("tests/e2e/test_security.py", "-k", "chunked")),
)


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked-not-ignored files)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def apply(tree: Path, bug: Bug) -> dict[Path, str] | str:
    """Apply the edits; returns the original texts (to restore) or why the patch does not apply."""
    originals: dict[Path, str] = {}
    for rel, old, new in bug.edits:
        path = tree / rel
        text = path.read_text()  # a second edit of one file applies on top of the first
        originals.setdefault(path, text)
        if text.count(old) != 1:
            restore(originals)
            return f"{rel}: the text to replace occurs {text.count(old)} times (the code moved: re-plant)"
        path.write_text(text.replace(old, new))
    return originals


def restore(originals: dict[Path, str]) -> None:
    for path, text in originals.items():
        path.write_text(text)


def pytest(tree: Path, args: tuple[str, ...]) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "BENTOML_DO_NOT_TRACK": "True", "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args], cwd=tree,
                       env=env, capture_output=True, text=True, check=False)
    tail = [ln for ln in p.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))] or p.stdout.splitlines()[-1:]
    return p.returncode, time.monotonic() - t0, "; ".join(tail)[:300]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="plant and test each bug this many times")
    ap.add_argument("--only", default="", help="comma-separated bug names")
    ap.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unplanted copy")
    args = ap.parse_args()
    bugs = [b for b in BUGS if not args.only or b.name in args.only.split(",")]
    if not bugs:
        ap.error(f"no bug named {args.only!r}; known: {', '.join(b.name for b in BUGS)}")
    with tempfile.TemporaryDirectory(prefix="vigil-planted-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        if not args.no_baseline:
            for tests in dict.fromkeys(b.tests for b in bugs):
                rc, secs, tail = pytest(tree, tests)
                print(f"baseline  {' '.join(tests)}: {'pass' if rc == 0 else 'FAIL'} ({secs:.0f} s)", flush=True)
                if rc != 0:
                    print(f"  the unplanted tree fails these tests ({tail}): no verdict is possible", flush=True)
                    return 2
        verdicts: dict[str, list[str]] = {}
        for bug in bugs:
            for run in range(args.runs):
                originals = apply(tree, bug)
                if isinstance(originals, str):
                    verdicts.setdefault(bug.name, []).append("error")
                    print(f"{bug.name:24} run {run + 1}: error  {originals}", flush=True)
                    break
                try:
                    rc, secs, tail = pytest(tree, bug.tests)
                finally:
                    restore(originals)
                verdict = "caught" if rc == 1 else "missed" if rc == 0 else "error"
                verdicts.setdefault(bug.name, []).append(verdict)
                print(f"{bug.name:24} run {run + 1}: {verdict:6} ({secs:.0f} s)  {tail if rc else ''}", flush=True)
    print()
    print(f"| planted bug | caught (of {args.runs}) |")
    print("|---|---|")
    for bug in bugs:
        v = verdicts.get(bug.name, [])
        print(f"| {bug.what} | {v.count('caught')}/{args.runs}{'' if set(v) <= {'caught'} else ' ' + ','.join(v)} |")
    everything = all(verdicts.get(b.name) == ["caught"] * args.runs for b in bugs)
    print("\nall caught" if everything else "\nNOT all caught")
    return 0 if everything else 1


if __name__ == "__main__":
    sys.exit(main())
