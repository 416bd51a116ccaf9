"""``python -m model_build {export-pretrained,...,evaluate,cpu-check,card} ...``.

Each command lives in its own module with ``add_arguments`` and ``run``; modules are imported
only when their command runs, so ``--help`` is fast and a missing optional package only breaks
the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "export-pretrained": (
        "model_build.pretrained",
        "export the shipped ImageNet MobileNetV2 labeler (fp32 + int8 + card)",
    ),
    "extra-images": (
        "model_build.extra_images",
        "unlabelled photos for distillation, from Debian packages (apt-get download)",
    ),
    "dyadic-finetune": (
        "model_build.dyadic_finetune",
        "fine-tune an int8 classifier through the dyadic-scales simulation; write its file",
    ),
    "distill": (
        "model_build.distill",
        "quantization-aware distillation of the ImageNet model (GPU; see export-pretrained)",
    ),
    "train": ("model_build.train", "transfer learning: frozen-backbone head, then fine-tune"),
    "export": ("model_build.export", "checkpoint -> ONNX (contract) -> int8, with parity checks"),
    "evaluate": (
        "model_build.evaluate",
        "test-set metrics through the functions' serving code; writes the model card",
    ),
    "stamp": (
        "model_build.stamp",
        "write an ONNX file's content hash into its metadata (its identity), nothing else",
    ),
    "add-embedding": (
        "model_build.embedding",
        "add the L2-normalized `embedding` output to a model file; classifier bit-identical",
    ),
    "retrieval": (
        "model_build.retrieval",
        "near-duplicate and same-category retrieval with the embedding; picks the threshold",
    ),
    "cpu-check": (
        "model_build.cpu_check",
        "optimized vs reference int8 execution on this CPU; records it in the model card",
    ),
    "narrow-inputs": (
        "model_build.narrow",
        "7-bit activations into the int8 dense layers: exact U8S8 kernels on AVX2 CPUs too",
    ),
    "pair-order": (
        "model_build.pair_order",
        "reorder channels so no U8S8 weight pair saturates on AVX2 CPUs (same results)",
    ),
    "dyadic-scales": (
        "model_build.dyadic",
        "power-of-two activation scales: optimized int8 execution equals the reference",
    ),
    "int8-latency": (
        "model_build.int8_latency",
        "batch-1 latency: this CPU, and AVX2 kernels exact vs saturating (CPUID hidden)",
    ),
    "card": (
        "model_build.card",
        "re-render model cards from the data files beside the models (no retraining)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m model_build", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error and exits
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd = argparse.ArgumentParser(
        prog=f"python -m model_build {argv[0]}", description=module.__doc__
    )
    module.add_arguments(cmd)
    return int(module.run(cmd.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
