"""Issue 16's targets, end to end through the public API, over several seeds:

Text (the census first names, `sparsenet train --model transformer`'s recipe):
- the transformer against the bag-of-n-grams logistic regression (character 1-4-grams): accuracy
  and macro F1 on the 1 290 test names (one name is 0.078 points);
- half of its attention heads and of its FFN neurons removed (`prune(granularity="head")`, then
  "neuron", magnitude, dependency groups), fine-tuned (AdamW, `--finetune-epochs`), compiled:
  accuracy against its own, and `bench_model` (what `sparsenet bench --baseline` runs) against
  the unpruned model at batch 1 and 64.

Ratings (MovieLens ml-latest-small, leave-last-out, `--model recommender`'s recipe):
- RMSE on the 671 test ratings, HR@10 / NDCG@10 of each test item among 99 unrated ones, against
  popularity and ALS matrix factorisation;
- 80 % of all embedding rows pruned by lookup frequency (scope global: the rarest users and items
  go first), fine-tuned (`--finetune-epochs` of `train_recommender`), the tables stored CSR and
  int8 (`compiled(..., {table: "csr"})`, `quantize_model(..., layers=tables)`; the MLP stays
  float: int8 makes its small products slower): RMSE and HR against its own, file bytes against
  the dense file, and `bench_model` against the dense original;
- the same with half of the MLP's neurons removed too (`granularity="neuron"`), which is what can
  make such a model faster: its tables are looked up row by row whatever their size.

    python benchmarks/text_and_ratings.py [--seeds 0,1,2] [--json results/text_and_ratings.json]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import numpy as np

from _harness import machine_info, write_json

import sparsenet as sn
from sparsenet.bench import bench_model
from sparsenet.metrics import classification_report
from sparsenet.optim import AdamW
from sparsenet.prune import compiled, prune
from sparsenet.quantize import quantize_model
from sparsenet.recommend import evaluate_recommender, train_recommender
from sparsenet.zoo import TRAINING, train_recipe


def _speed(model, baseline):
    rows = bench_model(model, (1, 64), repeats=9, baseline=baseline)["batches"]
    return {f"batch{r['batch']}": {"speedup": r["speedup"], "model_ms": r["model_ms"], "base_ms": r["dense_ms"],
                                   "range": r["speedup_range"]} for r in rows}


def text(seed, finetune_epochs, tmp):
    model, ds, f = train_recipe("transformer", seed=seed)
    out = {"accuracy": f["test_accuracy"], "macro_f1": f["test_macro_f1"],
           "bow_accuracy": f["baselines"]["bag_of_ngrams_logistic_regression"]["test_accuracy"],
           "bow_macro_f1": f["baselines"]["bag_of_ngrams_logistic_regression"]["test_macro_f1"],
           "train_seconds": f["train_seconds"]}
    dense_path = os.path.join(tmp, f"tf{seed}.safetensors")
    sn.save_model(model, dense_path)
    pruned = sn.load(dense_path)
    prune(pruned, granularity="head", sparsity=0.5)
    prune(pruned, granularity="neuron", sparsity=0.5)
    out["pruned_accuracy_before_finetune"] = classification_report(ds.y_test, pruned.predict(ds.x_test))["accuracy"]
    recipe = TRAINING["transformer"]
    opt = AdamW(pruned.parameters(), lr=recipe["lr"] / 2, weight_decay=recipe["weight_decay"])
    sn.fit(pruned, ds.x_train, ds.y_train, epochs=finetune_epochs, batch_size=recipe["batch_size"], optimizer=opt,
           lr_schedule="cosine", seed=seed, quiet=True)
    small = compiled(pruned, "auto")
    rep = classification_report(ds.y_test, small.predict(ds.x_test))
    out.update(pruned_accuracy=rep["accuracy"], pruned_macro_f1=rep["macro"]["f1"],
               params_before=int(sum(p.data.size for p in model.parameters())),
               params_after=int(sum(p.data.size for p in small.parameters())))
    out["speed"] = _speed(small, sn.load(dense_path))
    return out


def ratings(seed, finetune_epochs, tmp):
    model, ds, f = train_recipe("recommender", seed=seed)
    out = {"rmse": f["test_rmse"], "hit_rate": f["test_hit_rate"], "ndcg": f["test_ndcg"],
           "baselines": f["baselines"], "train_seconds": f["train_seconds"]}
    dense_path = os.path.join(tmp, f"rec{seed}.safetensors")
    sn.save_model(model, dense_path)
    pruned = sn.load(dense_path)
    r = prune(pruned, method="frequency", granularity="embedding-row", sparsity=0.8, scope="global",
              normalize="none", data=(ds.inputs("train"),))
    out["rows_pruned"] = {n: round(v["reached"], 4) for n, v in r.layers.items()}
    before = evaluate_recommender(pruned, ds, seed=seed)
    out.update(pruned_rmse_before_finetune=before["rmse"], pruned_hit_rate_before_finetune=before["hit_rate"])
    recipe = TRAINING["recommender"]
    tables = ["user_emb", "item_emb"]

    def finish(m, label):
        opt = AdamW(m.parameters(), lr=recipe["lr"] / 3, weight_decay=recipe["weight_decay"])
        train_recommender(m, ds, epochs=finetune_epochs, batch_size=recipe["batch_size"], optimizer=opt,
                          negatives=recipe["negatives"], interaction_weight=recipe["interaction_weight"],
                          seed=seed + 1000)
        q = quantize_model(compiled(m, {t: "csr" for t in tables}), layers=tables)
        path = os.path.join(tmp, f"rec{seed}-{label}.safetensors")
        sn.save_model(q, path)
        s = evaluate_recommender(sn.load(path), ds, seed=seed)
        return {"rmse": s["rmse"], "hit_rate": s["hit_rate"], "ndcg": s["ndcg"], "file_bytes": os.path.getsize(path),
                "speed": _speed(sn.load(path), sn.load(dense_path))}

    both = copy.deepcopy(pruned)
    prune(both, granularity="neuron", sparsity=0.5)
    rows = finish(pruned, "rows")
    out.update(pruned_rmse=rows["rmse"], pruned_hit_rate=rows["hit_rate"], pruned_ndcg=rows["ndcg"],
               dense_file_bytes=os.path.getsize(dense_path), pruned_file_bytes=rows["file_bytes"], speed=rows["speed"])
    out["rows_and_half_mlp"] = finish(both, "rows-mlp")
    return out


def _summary(rows, key):
    v = np.array([r[key] for r in rows], float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "values": v.round(4).tolist()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--finetune-epochs", type=int, default=10, help="transformer (the recommender: a third)")
    p.add_argument("--json")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    result = {"machine": machine_info(), "seeds": seeds, "text": [], "ratings": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            result["text"].append(dict(seed=seed, **text(seed, args.finetune_epochs, tmp)))
            result["ratings"].append(dict(seed=seed, **ratings(seed, max(args.finetune_epochs // 3, 1), tmp)))
            print(f"seed {seed}: text {result['text'][-1]}\n         ratings {result['ratings'][-1]}", flush=True)
    t, r = result["text"], result["ratings"]
    summary = {k: _summary(t, k) for k in ("accuracy", "bow_accuracy", "macro_f1", "bow_macro_f1", "pruned_accuracy")}
    summary.update({f"rec_{k}": _summary(r, k) for k in ("rmse", "hit_rate", "pruned_rmse", "pruned_hit_rate")})
    summary["rec_popularity_hit_rate"] = _summary([x["baselines"]["popularity"] for x in r], "test_hit_rate")
    summary["rec_mf_rmse"] = _summary([x["baselines"]["matrix_factorization"] for x in r], "test_rmse")
    summary["rec_file_ratio"] = _summary([{"v": x["dense_file_bytes"] / x["pruned_file_bytes"]} for x in r], "v")
    both = [x["rows_and_half_mlp"] for x in r]
    summary.update({f"rec_rows_mlp_{k}": _summary(both, k) for k in ("rmse", "hit_rate")})
    for kind, rows in (("text", t), ("rec", r), ("rec_rows_mlp", both)):
        for b in ("batch1", "batch64"):
            summary[f"{kind}_speedup_{b}"] = _summary([{"v": x["speed"][b]["speedup"]} for x in rows], "v")
    result["summary"] = summary
    result["seconds"] = round(time.perf_counter() - t0, 1)
    for k, v in summary.items():
        print(f"{k:32s} {v['mean']:.4f} ± {v['std']:.4f}  {v['values']}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
