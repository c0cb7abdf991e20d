"""The README.md model card of a model package, in the Hugging Face Hub's format.

A YAML metadata block (library_name, license, tags, datasets, metrics, and the headline result
in the Hub's model-index form), then what a reader needs before using the model: intended use,
the training data summary, the evaluation table with 95% bootstrap CIs per depth and mode, the
latency table, the licence and how to cite. Everything comes from the packaged files; what the
run does not have (no `evaluate` output) is said, not left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from unetjax.data import summary as summary_lib
from unetjax.evaluation import tables

CARD_FILE = "README.md"
TAGS = ("medical-imaging", "segmentation", "unet++", "jax")
HEADLINE_METRICS = {"dice": "Dice", "iou": "IoU"}
SPLIT_PREFERENCE = ("test", "validation", "train")
PAPERS = {
    "unet": """@inproceedings{ronneberger2015unet,
  title = {U-Net: Convolutional Networks for Biomedical Image Segmentation},
  author = {Ronneberger, Olaf and Fischer, Philipp and Brox, Thomas},
  booktitle = {Medical Image Computing and Computer-Assisted Intervention (MICCAI)},
  pages = {234--241},
  year = {2015},
  doi = {10.1007/978-3-319-24574-4_28}
}""",
    "unet_plusplus": """@article{zhou2020unetplusplus,
  title = {UNet++: Redesigning Skip Connections to Exploit Multiscale Features in Image
           Segmentation},
  author = {Zhou, Zongwei and Siddiquee, Md Mahfuzur Rahman and Tajbakhsh, Nima and Liang,
            Jianming},
  journal = {IEEE Transactions on Medical Imaging},
  volume = {39},
  number = {6},
  pages = {1856--1867},
  year = {2020},
  doi = {10.1109/TMI.2019.2959609}
}""",
    "unet_3plus": """@inproceedings{huang2020unet3plus,
  title = {UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation},
  author = {Huang, Huimin and Lin, Lanfen and Tong, Ruofeng and Hu, Hongjie and Zhang, Qiaowei
            and Iwamoto, Yutaro and Han, Xianhua and Chen, Yen-Wei and Wu, Jian},
  booktitle = {IEEE International Conference on Acoustics, Speech and Signal Processing
               (ICASSP)},
  pages = {1055--1059},
  year = {2020},
  doi = {10.1109/ICASSP40776.2020.9053405}
}""",
}
# Wide U-Net and UNet+ are the baselines of the UNet++ paper.
PAPERS["wide_unet"] = PAPERS["unet_plus"] = PAPERS["unet_plusplus"]


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML lines of JSON-like data; scalars as JSON (valid YAML, quoted strings)."""
    pad = " " * indent
    lines = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
    else:
        for item in value:
            if isinstance(item, Mapping | list) and item:
                nested = _yaml(item, indent + 2)
                lines += [f"{pad}- {nested[0].lstrip()}", *nested[1:]]
            else:
                lines.append(f"{pad}- {json.dumps(item)}")
    return lines


def _read(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _evaluations(out_dir: str, manifest: Mapping) -> dict[str, dict]:
    """{split: evaluation.json's report (with "summaries" from summary.json)}, best split
    first."""
    found = {}
    for split in sorted(manifest["evaluations"], key=_split_rank):
        directory = os.path.join(out_dir, "evaluation", split)
        report = _read(os.path.join(directory, "evaluation.json")) or {}
        summaries = (_read(os.path.join(directory, "summary.json")) or {}).get("summaries")
        if summaries:
            found[split] = {**report, "summaries": summaries}
    return found


def _split_rank(split: str) -> int:
    return SPLIT_PREFERENCE.index(split) if split in SPLIT_PREFERENCE else len(SPLIT_PREFERENCE)


def _headline_class(report: Mapping) -> str:
    if report.get("headline_class") is not None:
        return str(report["headline_class"])
    return str(report["summaries"][0]["class"])


def metadata(manifest: Mapping, config, evaluations: Mapping[str, dict], name: str) -> dict:
    """The card's YAML metadata: Hub fields, and the default setting's Dice and IoU on the best
    evaluated split as a model-index entry."""
    data_name = config.data.name
    card: dict[str, Any] = {
        "library_name": "unetjax",
        "license": manifest["license"],
        "tags": list(TAGS),
        "datasets": [data_name],
        "metrics": list(HEADLINE_METRICS),
    }
    if not evaluations:
        return card
    split, report = next(iter(evaluations.items()))
    setting = manifest["default_setting"]
    headline = _headline_class(report)
    metrics = [
        {
            "type": metric,
            "value": round(float(s["mean"]), 4),
            "name": f"{label} (L{setting['depth']} {setting['mode']}, class {headline}, "
            "mean over cases)",
        }
        for metric, label in HEADLINE_METRICS.items()
        for s in report["summaries"]
        if (s["depth"], s["mode"], str(s["class"]), s["metric"])
        == (setting["depth"], setting["mode"], headline, metric)
    ]
    if metrics:
        card["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-segmentation", "name": "Image Segmentation"},
                        "dataset": {"name": data_name, "type": data_name, "split": split},
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return card


def _evaluation_section(evaluations: Mapping[str, dict]) -> list[str]:
    if not evaluations:
        return [
            "Not evaluated: the run had no `unetjax-evaluate` output for this checkpoint. "
            "Evaluate it (`unetjax-evaluate --model RUN --split test`) and package again."
        ]
    lines = []
    for split, report in evaluations.items():
        context = ", ".join(
            f"{key} {report[key]}" for key in ("scored", "device", "threshold") if key in report
        )
        lines += [f"### {split} split", "", f"Step {report.get('step')}; {context}.", ""]
        lines += [*tables.per_case_table(report["summaries"], _headline_class(report)), ""]
    return lines


def _latency_section(evaluations: Mapping[str, dict]) -> list[str]:
    timed = [r for r in evaluations.values() if r.get("results")]
    if not timed:
        return ["Not measured: `unetjax-evaluate` times every depth and mode."]
    report = timed[0]
    size = "x".join(str(s) for s in report.get("latency_image_size") or [])
    lines = [
        f"On {report.get('device')}, images of {size}; {report.get('latency')}.",
        "",
        "| depth | mode | parameters | latency (ms) |",
        "| --- | --- | ---: | ---: |",
    ]
    lines += [
        f"| L{r['depth']} | {r['mode']} | {r['params']:,} | {r['latency_ms']:.2f} |"
        for r in report["results"]
    ]
    return lines


def text(manifest: Mapping, config, evaluations: Mapping[str, dict], name: str, dataset_summary):
    """The whole README.md."""
    setting = manifest["default_setting"]
    model = config.model
    task = (dataset_summary or {}).get("task", "")
    outputs = ", ".join(manifest["output_names"])
    lines = [
        "---",
        *_yaml(metadata(manifest, config, evaluations, name)),
        "---",
        "",
        f"# {name}",
        "",
        f"A {model.architecture} ({model.spatial_dims}D, depth {model.depth}, "
        f"{model.output_activation} output) for {task} segmentation, trained with unetjax "
        f"on `{config.data.name}` (checkpoint step {manifest['step']}).",
        "",
        "## Intended use",
        "",
        f"Research on segmenting {outputs} in images like its training data "
        f"({', '.join(manifest['channel_names'])} input channels). It is not a medical device "
        "and was not validated for clinical decisions; check it on your own data first.",
        "",
        "```python",
        "import unetjax",
        "",
        f'predictor = unetjax.load_pretrained("{name}")  # a folder or a Hub repository id',
        "# image: (*spatial, C) as read, in unit scale; normalised inside as in training",
        "probabilities = predictor.predict(image)",
        "```",
        "",
        f"Or `unetjax-predict --model {name} --output masks/ images/`, which uses "
        f"L{setting['depth']} {setting['mode']}: {setting['reason']}.",
        "",
        "## Training data",
        "",
    ]
    if dataset_summary:
        lines += ["```", summary_lib.text(dataset_summary), "```"]
    else:
        lines.append("The run recorded no dataset summary.")
    lines += ["", "## Evaluation", "", *_evaluation_section(evaluations), ""]
    lines += ["## Latency", "", *_latency_section(evaluations), ""]
    lines += [
        "## Licence",
        "",
        f"The weights: `{manifest['license']}`. They were trained on `{config.data.name}`, whose "
        "own licence and terms of use also apply to them. unetjax itself is Apache-2.0.",
        "",
        "## How to cite",
        "",
        f"The {model.architecture} architecture:",
        "",
        "```bibtex",
        PAPERS.get(model.architecture, PAPERS["unet"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def write(out_dir: str, manifest: Mapping, config) -> str:
    """Writes README.md into the package folder `out_dir`; returns its path."""
    name = os.path.basename(os.path.normpath(out_dir))
    dataset_summary = _read(os.path.join(out_dir, "dataset_summary.json"))
    body = text(manifest, config, _evaluations(out_dir, manifest), name, dataset_summary)
    path = os.path.join(out_dir, CARD_FILE)
    with open(path, "w") as f:
        f.write(body)
    return path
