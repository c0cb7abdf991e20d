"""The PyTorch side of `benchmarks.vs_pytorch`: peer networks, the same loss, timed steps.

Imported only in the processes that time a peer, so the rest of the package never needs torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.train_throughput import parse_shape
from unetjax import graph as graph_lib
from unetjax.graph import Graph, Resample

PEERS = ("plain", "monai", "smp")


def torch_modules():
    """torch and its nn, imported on demand so the rest of the package never needs them
    (torchvision importable beside a CPU torch wheel, for smp)."""
    from benchmarks.torch_import import torch_with_torchvision

    torch = torch_with_torchvision()

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


def torch_train_flops(model, spatial, batch_size, *, device) -> float:
    """FLOPs of one forward and backward (convolutions and matmuls, torch's FLOP counter)."""
    torch, _, _ = torch_modules()
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to(device).train()
    images = torch.randn((batch_size, 1, *spatial), device=device)
    masks = (torch.rand((batch_size, *spatial), device=device) > 0.5).int()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = sum(torch_loss(logits, masks) for logits in torch_heads(model(images)))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def torch_matmul_peak(*, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a float32 square matrix product in torch on the CPU: a practical ceiling."""
    torch, _, _ = torch_modules()
    a, b = torch.ones((size, size)), torch.ones((size, size))
    seconds = time_torch(lambda: a @ b, warmup=2, repeats=repeats, cuda=False)
    return 2 * size**3 / seconds


def measure_peer(
    peer: str, depths: Sequence[int], args: Any, row: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """One peer's rows for `benchmarks.vs_pytorch` (its `args`; inference at `depths`; `row`
    builds a row), its library versions and torch's matmul ceiling."""
    torch, _, _ = torch_modules()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    timing = {"device": device, "dtype": args.dtype, "warmup": args.warmup}
    rows = []
    for text in args.train_shapes:
        spatial, batch_size = parse_shape(text)
        network = make_peer(peer, args.base_filters)
        seconds = torch_train_seconds(network, spatial, batch_size, repeats=args.repeats, **timing)
        flops = torch_train_flops(network, spatial, batch_size, device=device)
        figures = peer_figures(network, batch_size, seconds, flops)
        rows.append(row("train", spatial, batch_size, peer, 4, figures))
    for text in args.infer_shapes:
        spatial, batch_size = parse_shape(text)
        for depth in depths:
            network = make_peer(peer, args.base_filters, depth if peer == "plain" else None)
            seconds = torch_infer_seconds(
                network, spatial, batch_size, repeats=args.repeats, **timing
            )
            rows.append(
                row(
                    "infer",
                    spatial,
                    batch_size,
                    peer,
                    depth,
                    peer_figures(network, batch_size, seconds, None),
                )
            )
    machine = {
        "torch": torch.__version__,
        "torch_device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    if peer == "monai":
        import monai

        machine["monai"] = monai.__version__
    if peer == "smp":
        import segmentation_models_pytorch as smp

        machine["smp"] = smp.__version__
    ceiling = torch_matmul_peak() if device.type == "cpu" else None
    return {"machine": machine, "ceiling": [ceiling, "torch float32 2048^3 matmul"], "rows": rows}


def peer_figures(network, batch_size: int, seconds: float, flops: float | None) -> dict[str, Any]:
    return {
        "params": sum(p.numel() for p in network.parameters()),
        "median_ms": seconds * 1e3,
        "img_per_s": batch_size / seconds,
        "gflop_per_step": None if flops is None else flops / 1e9,
    }
