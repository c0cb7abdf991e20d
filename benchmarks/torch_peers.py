"""The PyTorch side of `benchmarks.vs_pytorch`: peer networks, the same loss, timed steps.

Imported only in the processes that time a peer, so the rest of the package never needs torch.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.train_throughput import parse_shape
from unetjax import graph as graph_lib
from unetjax.graph import Graph, Resample

# Peer name -> (network, bfloat16 autocast, torch.compile). `--dtype bfloat16` autocasts all.
PEER_VARIANTS = {
    "plain": ("plain", False, False),
    "monai": ("monai", False, False),
    "monai_amp": ("monai", True, False),
    "monai_compile_amp": ("monai", True, True),
    "smp": ("smp", False, False),
}
PEERS = tuple(PEER_VARIANTS)


def peer_dtype(peer: str, dtype: str) -> str:
    """The precision a peer computes in: bfloat16 for the AMP variants, else `dtype`."""
    return "bfloat16" if PEER_VARIANTS[peer][1] else dtype


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


def make_peer(peer: str, base_filters: int, depth: int | None = None, spatial_dims: int = 2):
    """The peer network (eager; `PEER_VARIANTS` names its network); `depth` prunes the plain
    UNet++ to head L alone (None: all 4 heads)."""
    filters = tuple(base_filters * 2**level for level in range(5))
    peer = PEER_VARIANTS[peer][0] if peer in PEER_VARIANTS else peer
    if spatial_dims != 2 and peer != "monai":
        raise ValueError(f"peer {peer!r} is 2D only; 3D shapes need a MONAI peer")
    if peer == "plain":
        graph = graph_lib.build_graph("unet_plusplus", 4)
        if depth is not None:
            graph = graph_lib.subgraph(graph, depth, mode="fast")
        return make_torch_nested_unet(graph, filters)
    if peer == "monai":
        from monai.networks.nets import BasicUNetPlusPlus

        return BasicUNetPlusPlus(
            spatial_dims=spatial_dims,
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


def time_torch(
    call: Callable[[], Any], *, warmup: int, repeats: int, cuda: bool
) -> tuple[float, float]:
    """Seconds of the first call (`torch.compile` compiles in it) and the median seconds of
    `repeats` calls after `warmup` more, synchronising CUDA around each timed call."""
    torch, _, _ = torch_modules()

    def timed() -> float:
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if cuda:
        torch.cuda.synchronize()
    first = timed()
    for _ in range(warmup):
        call()
    times = [timed() for _ in range(repeats)]
    return first, float(np.median(times))


def prepare(model, *, device, compile_backend: str | None, train: bool):
    """The model on `device` in train or eval mode, and what to call: it, or `torch.compile` of
    it (dynamo's caches reset first, so each shape compiles as a fresh program would)."""
    torch, _, _ = torch_modules()
    model = model.to(device).train(train)
    if not compile_backend:
        return model, model
    torch._dynamo.reset()
    # MONAI's UpCat.forward breaks the graph (at torch.jit.isinstance); its resumption recompiles
    # for each of the 10 UpCat blocks' shapes, and past dynamo's limit (8) the rest ran eagerly.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return model, torch.compile(model, backend=compile_backend)


def torch_train_seconds(
    model, spatial, batch_size, *, device, autocast, compile_backend, warmup, repeats
) -> tuple[float, float]:
    """(first step, median step) seconds of forward, summed deep-supervision loss, backward and
    Adam, with bfloat16 autocast if `autocast`."""
    torch, _, _ = torch_modules()
    model, forward = prepare(model, device=device, compile_backend=compile_backend, train=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((batch_size, 1, *spatial), generator=generator).to(device)
    masks = (torch.rand((batch_size, *spatial), generator=generator) > 0.5).int().to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            heads = torch_heads(forward(images))
        loss = sum(torch_loss(logits, masks) for logits in heads)
        loss.backward()
        optimizer.step()
        return loss

    return time_torch(step, warmup=warmup, repeats=repeats, cuda=device.type == "cuda")


def torch_infer_seconds(
    model, spatial, batch_size, *, device, autocast, compile_backend, warmup, repeats
) -> tuple[float, float]:
    """(first call, median call) seconds of the sigmoid of the deepest head."""
    torch, _, _ = torch_modules()
    _, forward = prepare(model, device=device, compile_backend=compile_backend, train=False)
    images = torch.randn((batch_size, 1, *spatial), generator=torch.Generator().manual_seed(0)).to(
        device
    )

    @torch.inference_mode()
    def infer():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return torch.sigmoid(torch_heads(forward(images))[-1].float())

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
    _, seconds = time_torch(lambda: a @ b, warmup=2, repeats=repeats, cuda=False)
    return 2 * size**3 / seconds


def base_filters_for(spatial: Sequence[int], args: Any) -> int:
    """Level-0 filters of a shape's networks: `--base-filters` in 2D, `--base-filters-3d` in 3D."""
    return args.base_filters_3d if len(spatial) == 3 else args.base_filters


def measure_peer(
    peer: str, depths: Sequence[int], args: Any, row: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """One peer's rows for `benchmarks.vs_pytorch` (its `args`; inference at `depths`; `row`
    builds a row), its library versions and torch's matmul ceiling."""
    torch, _, _ = torch_modules()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # cuDNN picks its convolution algorithms by timing them, as XLA autotunes its own.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    dtype = peer_dtype(peer, args.dtype)
    compiled = PEER_VARIANTS[peer][2]
    timing = {
        "device": device,
        "autocast": dtype == "bfloat16",
        "compile_backend": args.compile_backend if compiled else None,
        "warmup": args.warmup,
        "repeats": args.repeats,
    }

    def measured(task, spatial, batch_size, depth):
        """One row's figures; the network lives only here, so the next row's peak is its own."""
        pruned = depth if peer == "plain" and task == "infer" else None
        network = make_peer(peer, base_filters_for(spatial, args), pruned, len(spatial))
        reset_peak_memory(torch, device)
        seconds = torch_train_seconds if task == "train" else torch_infer_seconds
        first, median = seconds(network, spatial, batch_size, **timing)
        figures = {
            "params": sum(p.numel() for p in network.parameters()),
            "median_ms": median * 1e3,
            "img_per_s": batch_size / median,
            "dtype": dtype,
            "compile_s": first if compiled else None,
            "device_peak_mib": peak_memory_mib(torch, device),
            "gflop_per_step": None,
        }
        if task == "train":
            flops = torch_train_flops(network, spatial, batch_size, device=device)
            figures["gflop_per_step"] = flops / 1e9
        return row(task, spatial, batch_size, peer, depth, figures)

    rows = []
    for text in args.train_shapes:
        spatial, batch_size = parse_shape(text)
        rows.append(measured("train", spatial, batch_size, 4))
    for text in args.infer_shapes:
        spatial, batch_size = parse_shape(text)
        rows += [measured("infer", spatial, batch_size, depth) for depth in depths]
    machine = {
        "torch": torch.__version__,
        "torch_device": str(device),
        "torch_device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
    }
    if PEER_VARIANTS[peer][0] == "monai":
        import monai

        machine["monai"] = monai.__version__
    if peer == "smp":
        import segmentation_models_pytorch as smp

        machine["smp"] = smp.__version__
    ceiling = torch_matmul_peak() if device.type == "cpu" and args.ceiling else None
    return {"machine": machine, "ceiling": [ceiling, "torch float32 2048^3 matmul"], "rows": rows}


def reset_peak_memory(torch, device) -> None:
    """Frees what earlier rows left and restarts CUDA's high-water mark (nothing on the CPU)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mib(torch, device) -> float | None:
    """CUDA's allocated high-water mark since `reset_peak_memory` (None on the CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**20
