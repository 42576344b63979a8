"""The Ray Tune trainable: one proxy training, reported at every evaluation (the scheduler's rungs and the
end) with the full-size network's MACs (and latency, where the study has it as an objective: the searcher
puts it in the config), so schedulers can stop it on every objective, and the Ray node it runs on, which
the trial records.

A failure inside training (divergence, out-of-memory, any error) is reported as a result carrying its
reason, so the study records why; only Ray's own errors (a killed worker) arrive as Tune errors.
"""

from __future__ import annotations


def proxy_trial(
    config: dict, data, recipe: dict, threads: int = 1, memory_limit: int | None = None, evaluate_at: list[float] = ()
) -> None:
    import ray
    import torch
    from ray import tune

    from searchspace import ArchSpec, count
    from trials import ProxyRecipe, failure_reason, memory_cap, train_seeds
    from trials import record

    torch.set_num_threads(threads)  # the trial's share of the CPUs, not all of them
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None  # None: called outside Ray (tests)
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    spec = ArchSpec.model_validate(config["spec"])
    fixed = {"macs": count(spec).macs}  # of the full-size network: the study's second objective, fixed per trial
    if record.LATENCY_MS in config:
        fixed[record.LATENCY_MS] = config[record.LATENCY_MS]
    with memory_cap(memory_limit):
        results = train_seeds(spec, data, ProxyRecipe(**recipe), device, evaluate_at)
        while True:
            try:
                result = next(results)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - every training failure becomes the trial's recorded reason
                results.close()  # frees the model and optimizer before Ray reports
                tune.report({"failure": failure_reason(exc), "proxy_top1": float("nan"), record.NODE: node})
                return
            tune.report({**result.metrics(), **fixed, record.NODE: node})
