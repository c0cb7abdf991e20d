"""ResNet-34 UNet++: unetjax against smp's UnetPlusPlus("resnet34"), train and inference images/s.

    python -m benchmarks.encoder_unet --size 256 --train-batch 8 --repeats 3

Each implementation runs in its own process, in the order A B B A (unetjax, smp, smp, unetjax),
so a drift in the machine's load shows as a difference between the two runs of one; `uptime`
is recorded before each. Train: one Adam step on the sum of the heads' BCE losses (smp has one
head; ours is measured with smp's single head, and with deep supervision's four). Inference:
batch 1, probabilities. unetjax also reports pruned L1..L4 inference latency (the row smp has no
counterpart for). float32 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

ROOT_MODULE = "benchmarks.encoder_unet"


def _timed(call, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from unetjax import backend, models, nested_unet
    from unetjax.cli import import_smp

    base = import_smp.import_config(
        encoder="resnet34", classes=1, in_channels=3, normalize="imagenet", source="-"
    ).model.to_dict()
    rng = np.random.default_rng(0)
    size = args.size
    images = jnp.asarray(rng.uniform(0, 1, (args.train_batch, size, size, 3)), jnp.float32)
    masks = jnp.asarray(rng.uniform(0, 1, (args.train_batch, size, size, 1)) > 0.5, jnp.float32)
    results = {}
    for deep_supervision in (False, True):
        model = models.from_config({**base, "deep_supervision": deep_supervision})
        optimizer = optax.adam(1e-4)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        opt_state = optimizer.init(params)

        @backend.jit
        def step(params, rest, opt_state, images, masks, graphdef=graphdef, optimizer=optimizer):
            def loss_fn(params, rest):
                # Fresh Variables at the grad trace level: batch statistics are updated inside.
                model = nnx.merge(graphdef, params, jax.tree.map(lambda value: value, rest))
                logits = model(images, train=True)
                loss = sum(optax.sigmoid_binary_cross_entropy(x, masks).mean() for x in logits)
                return loss, nnx.state(model, nnx.BatchStat)

            (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), stats, opt_state

        state = [params, rest, opt_state]

        def train_call(state=state, step=step):
            params, _, opt = step(state[0], state[1], state[2], images, masks)
            jax.block_until_ready(params)
            state[0], state[2] = params, opt

        seconds = _timed(train_call, args.warmup, args.repeats)
        key = "train_ds" if deep_supervision else "train"
        results[key] = args.train_batch / seconds
        if not deep_supervision:
            predict = backend.jit(lambda state, x, g=graphdef: nnx.merge(g, state).predict(x))
            state_all = nnx.state(model)
            results["infer"] = 1 / _timed(
                lambda p=predict, s=state_all: jax.block_until_ready(p(s, images[:1])),
                args.warmup,
                args.repeats,
            )
            results["params"] = nested_unet.count_params(model)
        else:
            for depth in model.head_depths:
                pruned = nested_unet.prune(model, depth)
                g, s = nnx.split(pruned)
                predict = backend.jit(
                    lambda s, x, g=g, d=depth: nnx.merge(g, s).predict(x, depth=d)
                )
                results[f"infer_L{depth}_ms"] = 1000 * _timed(
                    lambda p=predict, s=s: jax.block_until_ready(p(s, images[:1])),
                    args.warmup,
                    args.repeats,
                )
                results[f"params_L{depth}"] = nested_unet.count_params(pruned)
    return results


def run_smp(args) -> dict:
    from benchmarks.torch_import import torch_with_torchvision

    torch = torch_with_torchvision()
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.UnetPlusPlus("resnet34", encoder_weights=None, classes=1)
    size = args.size
    images = torch.rand(args.train_batch, 3, size, size)
    masks = (torch.rand(args.train_batch, 1, size, size) > 0.5).float()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def train_call():
        optimizer.zero_grad()
        loss_fn(model(images), masks).backward()
        optimizer.step()

    model.train()
    results = {"train": args.train_batch / _timed(train_call, args.warmup, args.repeats)}
    model.eval()

    def infer_call():
        with torch.no_grad():
            torch.sigmoid(model(images[:1]))

    results["infer"] = 1 / _timed(infer_call, args.warmup, args.repeats)
    results["params"] = sum(p.numel() for p in model.parameters())
    results["torch_threads"] = torch.get_num_threads()
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--impl", choices=("jax", "smp"), default=None, help="(child process)")
    parser.add_argument("--output", default=None, help="write the runs as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.impl:
        print(json.dumps(run_jax(args) if args.impl == "jax" else run_smp(args)))
        return []
    runs = []
    for impl in ("jax", "smp", "smp", "jax"):
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        child = [sys.executable, "-m", ROOT_MODULE, "--impl", impl]
        child += [f"--size={args.size}", f"--train-batch={args.train_batch}"]
        child += [f"--warmup={args.warmup}", f"--repeats={args.repeats}"]
        completed = subprocess.run(child, capture_output=True, text=True, check=True)
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        runs.append({"impl": impl, "uptime": load, **result})
        print(json.dumps(runs[-1]))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(runs, f, indent=2)
    return runs


if __name__ == "__main__":
    main()
