"""The plan's predicted peak memory against the train step's measured peak, per memory budget.

    python benchmarks/plan_memory.py [--data ../shared/data/msd_hippocampus] [--budgets 2 4 8]

For each budget, plans DATA (the memory fit compiles the real train step and reads XLA's
`memory_analysis()`; the step is not timed here), then runs that step in a fresh process at the
planned batch and patch: the measured peak is the resident memory its first run adds (VmRSS
sampled every millisecond, less the RSS just before it; XLA:CPU keeps the temporary buffer for
later runs) plus the bytes of the state and batch it takes as arguments. On a GPU the device's
`peak_bytes_in_use` is read instead. Prints a table and writes --output (JSON). Measures memory,
not time: a loaded machine does not change it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(plan_path: str) -> dict:
    """Runs the planned step (in this process) and returns its measured peak."""
    import jax
    import jax.numpy as jnp
    import ml_collections
    import numpy as np

    from unetjax import backend, models, optim, steps
    from unetjax.planning import fits

    with open(plan_path) as f:
        plan = json.load(f)
    model_config = ml_collections.ConfigDict(plan["measured_model"])
    batch, patch = plan["config"]["train.batch_size"], plan["config"]["data.patch_size"]
    optimizer, schedule = optim.make_optimizer(fits.MEASURE_OPTIMIZER, 1000)
    graphdef, state = steps.create_train_state(models.from_config(model_config), optimizer)
    step = backend.jit(
        steps.make_train_step(
            graphdef, optimizer, output_activation=model_config.output_activation, schedule=schedule
        ),
        donate_argnums=(0,),
    )
    rng = np.random.default_rng(0)
    inputs = {
        "image": jnp.asarray(
            rng.normal(size=(batch, *patch, model_config.in_channels)).astype(np.float32)
        ),
        "mask": jnp.asarray(
            rng.integers(0, model_config.num_classes, size=(batch, *patch)).astype(np.int32)
        ),
    }
    compiled = step.lower(state, inputs).compile()
    arguments = sum(x.nbytes for x in jax.tree.leaves((state, inputs)))
    device = jax.devices()[0]
    if device.platform != "cpu":
        state, metrics = compiled(state, inputs)
        jax.block_until_ready(metrics)
        return {"measured_bytes": int(device.memory_stats()["peak_bytes_in_use"]), "how": "device"}
    before, peak, running = _rss_bytes(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    # The first run only: XLA:CPU keeps a step's temporary buffer for the next run, so later
    # runs add nothing to the resident memory.
    state, metrics = compiled(state, inputs)
    jax.block_until_ready(metrics)
    running[0] = False
    sampler.join()
    return {
        "measured_bytes": int(peak[0] - before + arguments),
        "how": "rss",
        "arguments": arguments,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--data", default=os.path.join(REPO, "..", "shared", "data", "msd_hippocampus")
    )
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.0, 4.0, 8.0], help="GB")
    parser.add_argument("--architecture", default="unet_plusplus")
    parser.add_argument("--output", default="plan_memory.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one plan, this process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    import ml_collections

    from unetjax.cli.plan import MODEL_OPTIONS
    from unetjax.planning import fingerprint, planner, plans_file

    fp = fingerprint.fingerprint(args.data)
    base = ml_collections.ConfigDict({"architecture": args.architecture, **MODEL_OPTIONS})
    rows = []
    for gb in args.budgets:
        plan = planner.make_plan(fp, plans_file.budget(gb, 1.0), base, step_seconds=lambda *a: 1.0)
        path = f"/tmp/plan_memory_{gb:g}.json"
        with open(path, "w") as f:
            json.dump(plan, f, default=list)
        env = {**os.environ, "PYTHONPATH": REPO, "MALLOC_MMAP_THRESHOLD_": "65536"}
        result = subprocess.run(
            [sys.executable, __file__, "--measure", path], env=env, capture_output=True, text=True
        )
        if result.returncode:
            raise SystemExit(result.stderr[-2000:])
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        predicted = plan["predicted_peak_bytes"]
        row = {
            "budget_gb": gb,
            "patch": plan["config"]["data.patch_size"],
            "batch": plan["config"]["train.batch_size"],
            "predicted_gb": predicted / 2**30,
            "measured_gb": measured["measured_bytes"] / 2**30,
            "how": measured["how"],
        }
        row["measured_over_predicted"] = row["measured_gb"] / row["predicted_gb"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(args.output, "w") as f:
        json.dump(rows, f, indent=2)
    print("| budget GB | patch | batch | predicted GB | measured GB | measured / predicted |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['budget_gb']:g} | {'x'.join(map(str, r['patch']))} | {r['batch']} | "
            f"{r['predicted_gb']:.3f} | {r['measured_gb']:.3f} | "
            f"{r['measured_over_predicted']:.2f} |"
        )


if __name__ == "__main__":
    main()
