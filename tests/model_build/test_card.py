"""Model cards: one template, filled from each model's data files; numbers checked, not prose."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jinja2
import jinja2.meta
import pytest

from model_build import card
from model_build.__main__ import main
from model_build.serving import REPO_ROOT

MODELS = REPO_ROOT / "functions" / "models"
FASHION = MODELS / "fashion_mnist_mobilenet_v2.int8.onnx"
IMAGENET = MODELS / "imagenet_mobilenet_v2.int8.onnx"
SHIPPED = [FASHION, IMAGENET]
#: What a reader cannot act on: paths of the machine that built a model, checkpoint names.
LEAKS = re.compile(r"\.mb-carry|(?<![\w.])/(?:work|tmp|home|root|mnt|opt)/|runs/gpu|studentR\d")


def data(model: Path, suffix: str) -> dict | list:
    return json.loads(card.sibling(model, suffix).read_text())


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``## heading``, as lists of cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [x for x in section.splitlines() if x.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", x)[1:-1]] for x in lines[2:]]


def copy_model(model: Path, tmp_path: Path, report: dict) -> Path:
    """The ONNX file in a scratch folder with the given eval.json beside it (no cpus.json)."""
    dest = tmp_path / model.name
    shutil.copyfile(model, dest)
    card.sibling(dest, ".eval.json").write_text(json.dumps(report))
    return dest


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name.split(".")[0])
def test_each_shipped_card_is_its_data_files_rendered(model: Path) -> None:
    assert card.sibling(model, ".md").read_text() == card.render(model), (
        "re-render: python -m model_build card " + str(model.relative_to(REPO_ROOT))
    )


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name.split(".")[0])
def test_cards_name_no_build_machine_path_or_checkpoint(model: Path) -> None:
    text = card.render(model)
    assert not LEAKS.findall(text)
    assert "```" in text and "python -m model_build" in text  # commands stay, runnable as shown


def test_the_leak_check_finds_what_the_old_cards_said() -> None:
    old = "--distill-pack .mb-carry/distill/pack.npz; `distilled studentR2 (lr 0.0001)` /work/x"
    assert len(LEAKS.findall(old)) == 3


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name.split(".")[0])
def test_the_cpu_table_rows_match_cpus_json(model: Path) -> None:
    rows = table_rows(card.render(model), "Every CPU gives the same answers")
    recorded = data(model, ".cpus.json")
    assert len(rows) == len(recorded) > 0
    for cells, r in zip(rows, recorded, strict=True):
        assert cells[0].startswith(r["cpu"]["name"])
        assert cells[1] == f"{r['cpu']['int8_kernels']} ({r['cpu']['serving_int8_path']})"
        assert cells[2] == str(r["images"])
        assert cells[3] == ("" if "top1_optimized" not in r else card.pct(r["top1_optimized"]))
        assert cells[4] == ("" if "top1_reference" not in r else card.pct(r["top1_reference"]))
        assert cells[5] == card.pct(r["top1_agreement"])
        assert cells[6] == f"{card.pct(r['decisive_agreement'])} of {r['decisive_images']}"
        assert cells[7] == f"{r['max_abs_diff']:.3f}"
        same = r.get("identical_images")
        assert cells[8] == ("" if same is None else str(same))
        lat = r.get("latency_ms_1thread")
        assert cells[9] == ("" if lat is None else f"{lat:.2f}")


def test_the_fashion_card_shows_the_numbers_of_its_eval_json() -> None:
    text = card.render(FASHION)
    r = data(FASHION, ".eval.json")
    m, twin = r["model"], r["compare"]
    assert f"| test top-1 / top-5 | {card.pct(m['top1'])} / {card.pct(m['top5'])} |" in text
    assert f"{100 * (twin['top1'] - m['top1']):+.2f} points" in text
    assert card.mb(FASHION.stat().st_size) in text
    rows = table_rows(text, "Per class (this file)")
    assert [row[0] for row in rows] == m["labels"]
    for row, p, rc, counts in zip(rows, m["precision"], m["recall"], m["confusion"], strict=True):
        assert row[1:] == [f"{p:.3f}", f"{rc:.3f}", str(sum(counts))]
    results = table_rows(text, "Results (test set, serving path, the build machine's CPU)")
    assert results[0][0] == FASHION.name and results[1][0] == Path(twin["file"]).name
    assert results[0][4] == f"{m['latency_ms_1thread']:.2f} ms"
    assert results[1][5] == f"{twin['latency_ms_default_threads']:.2f} ms"
    assert f"--epochs {r['config']['epochs']}" in text and "--data fashion-mnist" in text
    assert f"{r['export']['parity_max_abs_diff_fp32_vs_torch']:.2e}" in text
    assert "![training curves](fashion_mnist_mobilenet_v2.curves.png)" in text


def test_the_imagenet_card_shows_the_numbers_of_its_eval_json() -> None:
    text = card.render(IMAGENET)
    r = data(IMAGENET, ".eval.json")["export_pretrained"]
    assert f"| {card.pct(r['int8_top1_agreement'], 1)} of {r['check_images']} |" in text
    photos, frames = r["int8_top1_agreement_photos"], r["int8_top1_agreement_frames"]
    assert f"{card.pct(photos[0], 1)} of {photos[1]} / {card.pct(frames[0], 1)} of" in text
    assert f"int8 {r['latency_int8_1thread_ms']:.2f} ms" in text
    assert card.mb(r["fp32_bytes"]) in text and card.mb(IMAGENET.stat().st_size) in text
    check = table_rows(text, "Agreement on the check set")
    assert len(check) == len(r["check_rows"]) == r["check_images"]
    for cells, (name, ref, ref_p, q, q_p) in zip(check, r["check_rows"], strict=True):
        assert cells == [name, ref, f"{ref_p:.3f}", q, f"{q_p:.3f}", "yes" if ref == q else "NO"]
    trials = r["quantization_trials_on_calibration_images"]
    body = text.split("## How it was made\n", 1)[1]
    assert len(table_rows("## x\n" + body, "x")) == len(trials)
    assert sum(t.get("kept", False) for t in trials) == 1
    for flip in r["object_photos"]["flips"]:
        assert f"{flip[0]}: {flip[1]} ({flip[2]:.3f}) -> {flip[3]}" in text


def test_the_card_names_the_model_by_its_id_and_stored_sha() -> None:
    from model_build.stamp import check

    for model in SHIPPED:
        sha = check(model)
        assert sha and f"`{model.name.split('.')[0]}` / `{sha}`" in card.render(model)


def test_every_variable_the_template_reads_is_given() -> None:
    env = card.environment()
    tree = env.parse(card.TEMPLATE.read_text())
    # Names the template sets itself ({% set %}, loops, macro parameters) are not inputs.
    own = {n.name for n in tree.find_all(jinja2.nodes.Name) if n.ctx in ("store", "param")}
    inputs = jinja2.meta.find_undeclared_variables(tree) - own
    assert {"model", "pretrained", "trained", "cpus"} <= inputs
    for model in SHIPPED:
        assert inputs <= set(card.context(model)) | set(env.globals)


def test_a_missing_number_is_an_error_not_an_empty_cell(tmp_path: Path) -> None:
    report = data(FASHION, ".eval.json")
    del report["model"]["top5"]
    with pytest.raises(jinja2.UndefinedError, match="top5"):
        card.render(copy_model(FASHION, tmp_path, report))


def test_sections_a_model_has_no_data_for_are_left_out(tmp_path: Path) -> None:
    trained = data(FASHION, ".eval.json")
    bare = {"model": trained["model"], "compare": None, "config": None, "export": None}
    text = card.render(copy_model(FASHION, tmp_path, bare))
    assert card.pct(trained["model"]["top1"]) in text
    for absent in ("## Recipe", "## Export and quantization", "## What was tried", "## Figures"):
        assert absent not in text
    assert "top-1 loss vs twin" not in text and "| CPU |" in text  # an empty CPU table

    pre = data(IMAGENET, ".eval.json")
    pre["export_pretrained"] |= {"distillation": None, "object_photos": None}
    text = card.render(copy_model(IMAGENET, tmp_path, pre))
    assert "## Quantization-aware distillation" not in text and "## Secondary check" not in text
    assert "model_build export-pretrained\n```" in text


def test_the_card_command_writes_the_card_beside_the_model(tmp_path: Path) -> None:
    model = copy_model(FASHION, tmp_path, data(FASHION, ".eval.json"))
    assert main(["card", str(model)]) == 0
    assert card.sibling(model, ".md").read_text() == card.render(model)


def test_cpu_check_prints_its_row_through_the_template_macro() -> None:
    rows = data(IMAGENET, ".cpus.json")
    table = card.cpu_table(rows[:1])
    assert table.splitlines()[0].startswith("| CPU |") and len(table.splitlines()) == 5
    assert card.pct(rows[0]["top1_agreement"]) in table


def test_formatting_helpers() -> None:
    assert card.pct(0.95123) == "95.12 %"
    assert card.pct(1.0, 1) == "100.0 %"
    assert card.mb(2_617_725) == "2.62 MB"
    assert card.cell("a|b\nc") == "a\\|b c"


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_the_similarity_section_shows_the_numbers_of_its_similarity_json(model: Path) -> None:
    measured = data(model, ".similarity.json")
    text = card.render(model)
    assert f"| {card.pct(measured['photos']['recall_at_1'], 1)} |" in text
    assert f"| {card.pct(measured['category']['map'], 1)} |" in text
    threshold = measured["threshold"]
    shown = f"{threshold['threshold']:.2f}: " if threshold["usable"] else "none: "
    assert f"| `duplicate_threshold` | {shown}" in text


def test_a_model_without_similarity_data_has_no_similarity_section(tmp_path: Path) -> None:
    text = card.render(copy_model(FASHION, tmp_path, data(FASHION, ".eval.json")))
    assert "## Finding the same picture again" not in text


#: What ``dyadic-finetune`` writes beside its file (``<stem>.finetune.json``), made up.
FINETUNE = {
    "command": "dyadic-finetune",
    "from": {"file": FASHION.name, "version": "3.1.0", "sha": "0123456789ab"},
    "to": {"file": FASHION.name, "version": "3.2.0", "sha": "ba9876543210"},
    "data": "fashion-mnist",
    "backbone": "mobilenet_v2",
    "steps": 123,
    "batch": 17,
    "lr": 0.0003,
    "scale_lr": 0.002,
    "label_weight": 0.25,
    "images_per_class": 45,
    "training_images": 450,
    "seed": 7,
    "dense_inputs_7bit": 36,
    "rescaled": 11,
    "additions": 9,
    "lifted": 2,
    "seconds": 654.3,
}


def test_a_dyadic_fine_tune_is_described_from_its_report(tmp_path: Path) -> None:
    report = data(FASHION, ".eval.json")
    report |= {"finetune": FINETUNE | {"from_top1": 0.9321}, "carried_over_from": "3.1.0"}
    report["narrowed"] = (report.get("narrowed") or {"tensors": 36}) | {"version": "3.0.5"}
    row = data(FASHION, ".cpus.json")[0] | {"images": 4321, "identical_images": 4320}
    report["cpu_check"] = row
    text = card.render(copy_model(FASHION, tmp_path, report))
    section = text.split("## Fine-tuned for dyadic scales: optimized equals reference\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "the 3.1.0 file (`fashion_mnist_mobilenet_v2.int8.onnx`, sha `0123456789ab`" in section
    assert "test top-1 93.21 %" in section
    assert "11 activations inside the blocks" in section and "each of the 9 residual" in section
    assert "the 2 ReLU6 outputs" in section and "the 36 activations entering" in section
    assert f"on 4,320 of 4,321 test images on {row['cpu']['name']}" in section
    assert "123 steps of 17 images drawn from 450 training images (45 per class, seed 7" in section
    assert "lr 0.0003 (cosine)" in section and "lr 0.002)" in section and "0.25 x" in section
    assert "654 s on the build machine" in section
    command = (
        f"python -m model_build dyadic-finetune --model functions/models/{FASHION.name} "
        f"--data fashion-mnist --out {FASHION.name} --version 3.2.0 --steps 123 --batch 17 "
        "--lr 0.0003 --images 45 --seed 7"
    )
    assert command in section
    # The narrowing happened before, in another version: the card names that one.
    assert f"narrow-inputs --model functions/models/{FASHION.name} --version 3.0.5`" in text
    # The evaluation carried the earlier one over: the command says so, with the report.
    evaluate = text.split("## Evaluation command\n", 1)[1].split("\n## ", 1)[0]
    assert "# OLD.eval.json: the 3.1.0 file's evaluation" in evaluate
    finetune = "--finetune fashion_mnist_mobilenet_v2.finetune.json"
    assert f"--carry-over OLD.eval.json --data fashion-mnist {finetune}" in evaluate
    assert "--compare" not in evaluate and not LEAKS.findall(text)


def test_a_file_not_fine_tuned_has_no_fine_tune_section(tmp_path: Path) -> None:
    report = data(FASHION, ".eval.json") | {"finetune": None}
    text = card.render(copy_model(FASHION, tmp_path, report))
    assert "## Fine-tuned for dyadic scales" not in text
