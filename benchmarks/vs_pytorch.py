"""unetjax against PyTorch peers in one run: train step and inference, same shapes and threads.

Pairs (unetjax model <-> peer), each row printing unetjax / peer throughput (> 1: unetjax faster):
  - paper UNet++ (no norm, 9,041,601 parameters) <-> `TorchNestedUNet`, a plain PyTorch UNet++
    generated here from the same `unetjax.graph` (identical parameter counts, so identical FLOPs),
    at L4 and, for inference, pruned to L1..L3;
  - batch-norm UNet++ (9.05M) <-> MONAI `BasicUNetPlusPlus(spatial_dims=2, in_channels=1,
    out_channels=1, features=(32, 64, 128, 256, 512, 32), norm="batch", act="relu",
    upsample="deconv", deep_supervision=True)` (9.12M, the closest MONAI match);
  - batch-norm UNet++ <-> segmentation_models_pytorch
    `UnetPlusPlus("resnet18", encoder_weights=None)` (a different network, 16M parameters: a
    reference point, not a matched pair).
The train step is the same on both sides: forward, the summed deep-supervision loss of every head
(0.5 * BCE + 1 - soft Dice per image, as `unetjax.losses`), backward, Adam (lr 1e-3). Inference is
the sigmoid of the deepest head (unetjax: `predict(mode="fast")`; peers compute all their heads).

Install (the `bench` extra), on a CPU-only machine with the CPU build of torch first, so that pip
does not fetch a CUDA build of several GB:
  python3 -m venv /tmp/venv/bench && . /tmp/venv/bench/bin/activate
  pip install torch --index-url https://download.pytorch.org/whl/cpu   # or a local CPU wheel
  pip install -e '.[bench]'
Both frameworks run in this one process on the same device; torch uses `--threads` intra-op
threads (default: all cores, which is what XLA's CPU backend uses). torch runs on CUDA when
available, as JAX does.

Commands (the defaults are the figures in benchmarks/RESULTS.md):
  python -m benchmarks.vs_pytorch               # train 96:8 96:32 512:2, infer 96:32 512:1
  python -m benchmarks.vs_pytorch --quick                  # train 96:8, infer 96:8, 3 repeats
  python -m benchmarks.vs_pytorch --peers monai --train-shapes 96:8 --json out.json
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import harness, pruning_speed, train_throughput
from unetjax import graph as graph_lib
from unetjax.graph import Graph, Resample
from unetjax.nested_unet import UNetPlusPlus

PEERS = ("plain", "monai", "smp")
COLUMNS = (
    "task",
    "size",
    "batch",
    "unetjax",
    "peer",
    "L",
    "jax_params",
    "peer_params",
    "jax_ms",
    "peer_ms",
    "jax_img_per_s",
    "peer_img_per_s",
    "jax_over_peer",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-shapes",
        nargs="*",
        default=["96:8", "96:32", "512:2"],
        help="SIZE:BATCH for the train step",
    )
    parser.add_argument(
        "--infer-shapes", nargs="*", default=["96:32", "512:1"], help="SIZE:BATCH for inference"
    )
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument(
        "--depths",
        nargs="+",
        type=int,
        default=[1, 2, 3, 4],
        help="pruned depths compared with the plain PyTorch UNet++ at inference",
    )
    parser.add_argument(
        "--base-filters",
        type=int,
        default=32,
        help="filters at level 0 (doubling per level); 32 is the paper's",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute dtype (torch: autocast)",
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (CPU)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="train and infer at 96x96 batch 8, 1 warm-up, 3 repeats",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_shapes, args.infer_shapes = ["96:8"], ["96:8"]
        args.warmup, args.repeats = 1, 3
    return args


def torch_modules():
    """torch and its nn, imported on demand so the rest of the package never needs them."""
    import torch

    return torch, torch.nn, torch.nn.functional


def make_torch_nested_unet(
    graph: Graph, filters: Sequence[int], *, in_channels: int = 1, num_classes: int = 1
):
    """A plain PyTorch module of a U-Net/UNet++ `graph`: the paper's layers, no normalisation.

    3x3 convs with bias and ReLU, a 2x2 transposed conv per up-sampled input, max-pooling, one
    1x1 head per graph head: the parameter count equals `unetjax`'s for the same graph.
    """
    torch, nn, functional = torch_modules()

    class TorchNestedUNet(nn.Module):
        def __init__(self):
            super().__init__()
            channels = {graph_lib.INPUT: in_channels}
            self.blocks = nn.ModuleDict()
            self.upsamplers = nn.ModuleDict()
            for node in graph.nodes:
                if node.block is not graph_lib.Block.DOUBLE_CONV:
                    raise ValueError(f"{node.name}: only double-conv nodes are supported")
                width = filters[node.level]
                node_in = 0
                for edge in node.inputs:
                    if edge.resample is Resample.UP:
                        self.upsamplers[f"{edge.source}_to_{node.name}"] = nn.ConvTranspose2d(
                            channels[edge.source], width, 2, stride=2
                        )
                        node_in += width
                    else:
                        node_in += channels[edge.source]
                self.blocks[node.name] = nn.Sequential(
                    nn.Conv2d(node_in, width, 3, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 3, padding=1),
                    nn.ReLU(inplace=True),
                )
                channels[node.name] = width
            self.heads = nn.ModuleDict(
                {
                    head.name: nn.Conv2d(channels[head.source], num_classes, 1)
                    for head in graph.heads
                }
            )

        def forward(self, x):
            features = {graph_lib.INPUT: x}
            for node in graph.nodes:
                inputs = []
                for edge in node.inputs:
                    source = features[edge.source]
                    if edge.resample is Resample.UP:
                        source = self.upsamplers[f"{edge.source}_to_{node.name}"](source)
                    elif edge.resample is Resample.POOL:
                        source = functional.max_pool2d(source, edge.factor)
                    inputs.append(source)
                joined = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
                features[node.name] = self.blocks[node.name](joined)
            return tuple(self.heads[head.name](features[head.source]) for head in graph.heads)

    return TorchNestedUNet()


def make_peer(peer: str, base_filters: int, depth: int | None = None):
    """The peer network; `depth` prunes the plain UNet++ to head L alone (None: all 4 heads)."""
    filters = tuple(base_filters * 2**level for level in range(5))
    if peer == "plain":
        graph = graph_lib.build_graph("unet_plusplus", 4)
        if depth is not None:
            graph = graph_lib.subgraph(graph, depth, mode="fast")
        return make_torch_nested_unet(graph, filters)
    if peer == "monai":
        from monai.networks.nets import BasicUNetPlusPlus

        return BasicUNetPlusPlus(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            features=(*filters, filters[0]),
            norm="batch",
            act="relu",
            upsample="deconv",
            deep_supervision=True,
        )
    if peer == "smp":
        import segmentation_models_pytorch as smp

        return smp.UnetPlusPlus(
            encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=1
        )
    raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")


def torch_heads(outputs) -> list:
    """Peers return a tensor (smp), a list (MONAI) or a tuple (ours): always a list of heads."""
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def torch_loss(logits, mask):
    """0.5 * BCE + 1 - soft Dice per image (smooth 1), as `unetjax.losses` for one sigmoid class."""
    torch, _, functional = torch_modules()
    logits = logits.float()
    target = mask[:, None].float()
    bce = functional.binary_cross_entropy_with_logits(logits, target)
    probabilities = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    intersection = (probabilities * target).sum(dims)
    dice = (2 * intersection + 1) / (probabilities.sum(dims) + target.sum(dims) + 1)
    return 0.5 * bce + 1 - dice.mean()


def time_torch(call: Callable[[], Any], *, warmup: int, repeats: int, cuda: bool) -> float:
    """Median seconds per call, synchronising CUDA around each timed call."""
    torch, _, _ = torch_modules()
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def torch_train_seconds(model, spatial, batch_size, *, device, dtype, warmup, repeats) -> float:
    torch, _, _ = torch_modules()
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((batch_size, 1, *spatial), generator=generator).to(device)
    masks = (torch.rand((batch_size, *spatial), generator=generator) > 0.5).int().to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            heads = torch_heads(model(images))
        loss = sum(torch_loss(logits, masks) for logits in heads)
        loss.backward()
        optimizer.step()
        return loss

    return time_torch(step, warmup=warmup, repeats=repeats, cuda=device.type == "cuda")


def torch_infer_seconds(model, spatial, batch_size, *, device, dtype, warmup, repeats) -> float:
    torch, _, _ = torch_modules()
    model = model.to(device).eval()
    images = torch.randn((batch_size, 1, *spatial), generator=torch.Generator().manual_seed(0)).to(
        device
    )

    @torch.inference_mode()
    def infer():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            return torch.sigmoid(torch_heads(model(images))[-1].float())

    return time_torch(infer, warmup=warmup, repeats=repeats, cuda=device.type == "cuda")


def jax_model(config: str, base_filters: int, dtype: str) -> nnx.Module:
    filters = tuple(base_filters * 2**level for level in range(5))
    return UNetPlusPlus(
        rngs=nnx.Rngs(0),
        filters=filters,
        norm="none" if config == "paper" else "batch",
        dtype=None if dtype == "float32" else jnp.dtype(dtype),
    )


def jax_config_for(peer: str) -> str:
    return "paper" if peer == "plain" else "batch"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    torch, _, _ = torch_modules()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    machine = harness.machine_description()
    machine.update(
        torch=torch.__version__, torch_device=str(device), torch_threads=torch.get_num_threads()
    )
    print(
        f"vs_pytorch on {machine['device']} ({machine['cpu']}, {machine['nproc']} cores), "
        f"jax {machine['jax']}, torch {machine['torch']} on {device} with "
        f"{machine['torch_threads']} threads, {args.dtype}",
        flush=True,
    )
    timing = {"warmup": args.warmup, "repeats": args.repeats}
    rows = []

    def add_row(task, spatial, batch_size, peer, depth, jax_figures, peer_model, peer_seconds):
        row = {
            "task": task,
            "size": harness.size_name(spatial),
            "batch": batch_size,
            "unetjax": f"{jax_config_for(peer)} UNet++",
            "peer": peer,
            "L": depth,
            "jax_params": jax_figures["params"],
            "peer_params": sum(p.numel() for p in peer_model.parameters()),
            "jax_ms": jax_figures["median_ms"],
            "peer_ms": peer_seconds * 1e3,
            "jax_img_per_s": jax_figures["img_per_s"],
            "peer_img_per_s": batch_size / peer_seconds,
        }
        row["jax_over_peer"] = row["jax_img_per_s"] / row["peer_img_per_s"]
        rows.append(row)
        print(
            f"  {task} {row['size']} b{batch_size} {peer} L{depth}: unetjax "
            f"{row['jax_img_per_s']:.1f} img/s, peer {row['peer_img_per_s']:.1f} img/s",
            flush=True,
        )

    for shape_text in args.train_shapes:
        spatial, batch_size = train_throughput.parse_shape(shape_text)
        batch = train_throughput.synthetic_batch(spatial, batch_size)
        jax_figures = {}
        for peer in args.peers:
            config = jax_config_for(peer)
            if config not in jax_figures:
                jax_figures[config] = train_throughput.measure(
                    jax_model(config, args.base_filters, args.dtype), batch, **timing
                )
            peer_model = make_peer(peer, args.base_filters)
            seconds = torch_train_seconds(
                peer_model, spatial, batch_size, device=device, dtype=args.dtype, **timing
            )
            add_row("train", spatial, batch_size, peer, 4, jax_figures[config], peer_model, seconds)

    for shape_text in args.infer_shapes:
        spatial, batch_size = train_throughput.parse_shape(shape_text)
        images = jax.random.normal(
            jax.random.key(0), (batch_size, *spatial, 1), jnp.dtype(args.dtype)
        )
        models = {}
        for peer in args.peers:
            config = jax_config_for(peer)
            models.setdefault(config, jax_model(config, args.base_filters, args.dtype))
            for depth in args.depths if peer == "plain" else [4]:
                jax_figures = pruning_speed.measure(models[config], depth, "fast", images, **timing)
                peer_model = make_peer(peer, args.base_filters, depth)
                seconds = torch_infer_seconds(
                    peer_model, spatial, batch_size, device=device, dtype=args.dtype, **timing
                )
                add_row("infer", spatial, batch_size, peer, depth, jax_figures, peer_model, seconds)
    print()
    print(harness.format_table(rows, COLUMNS))
    print("jax_over_peer: unetjax images/s over the peer's (> 1: unetjax faster)")
    harness.write_json(
        args.json, {"benchmark": "vs_pytorch", "machine": machine, "args": vars(args), "rows": rows}
    )
    return rows


if __name__ == "__main__":
    main()
