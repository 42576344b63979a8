"""`nas calibrate` and `nas confirm`: proxy scores measured like the hypotheses they are.

calibrate: a panel of architectures (the in-budget presets and points drawn within the budget, convolution-
like, attention and hybrid alike) is trained by the proxy recipe with several seeds and by a stronger
reference recipe, each run a study of its own in the storage (browsable in the dashboard), through Ray like a
search. dashboards.calibration turns the runs into figures, stored on the proxy runs, so every search with the
same recipe and data shows them.
confirm: a search's front and the in-budget presets re-trained at a higher fidelity with several seeds,
stored beside the search; each front point is then confirmed or not.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field, replace

import numpy as np
import optuna

from dashboards import calibration as cal
from searchspace import ArchSpec, NasError, SearchSpace, count, format_budget, load_space, preset, preset_names
from searchspace.collapse import collapsed_axes
from searchspace.geometry import digest
from trials import ProxyRecipe, data_name
from trials import record

from .search import RayOptions, SearchOptions, run_search
from .study import DEFAULT_STORAGE, load_study, space_digest

ATTENTION_LIKE = ("attention", "hadamard")  # dynamic weights computed from queries and keys
FAMILIES = ("convolution-like", "attention", "hybrid")


def family(spec: ArchSpec) -> str:
    """convolution-like (no attention-like mixer), attention (only attention-like mixers) or hybrid."""
    mixers = [m for s in spec.stages for m in (s.mixer, s.second_mixer) if m is not None]
    attention = sum(m.dynamic in ATTENTION_LIKE for m in mixers)
    return "attention" if attention == len(mixers) else "convolution-like" if attention == 0 else "hybrid"


def default_panel(space_file: str | None, budget: int, points: int, seed: int, presets: bool = True) -> list[ArchSpec]:
    """The presets within the budget and `points` points drawn within it, as evenly as the space allows
    across the three families (each family gets its share; a family the space cannot draw is left out)."""
    panel = [preset(n) for n in preset_names() if count(preset(n)).macs <= budget] if presets else []
    space = load_space(space_file)
    rng = random.Random(seed)
    by_family: dict[str, list[ArchSpec]] = {f: [] for f in FAMILIES}
    seen = {s.id for s in panel}
    for _ in range(200 * max(1, points)):
        spec = space.sample(rng)
        if spec.id in seen or count(spec).macs > budget:
            continue
        seen.add(spec.id)
        by_family[family(spec)].append(spec)
        if all(len(v) >= points for v in by_family.values()):
            break
    drawn: list[ArchSpec] = []
    while len(drawn) < points and any(by_family.values()):  # round robin over the families
        for f in FAMILIES:
            if by_family[f] and len(drawn) < points:
                drawn.append(by_family[f].pop(0))
    return panel + drawn


@dataclass
class CalibrateOptions:
    budget: int
    space: str | None = None
    data: str | None = None
    storage: str = DEFAULT_STORAGE
    points: int = 8
    presets: bool = True
    seed: int = 0
    proxy: ProxyRecipe = field(default_factory=ProxyRecipe)
    proxy_seeds: int = 2
    reference: ProxyRecipe = field(default_factory=ProxyRecipe)
    reference_seeds: int = 1
    ray: RayOptions = field(default_factory=RayOptions)
    artifact_dir: str = "nas-artifacts"


def run_key(space: SearchSpace, recipe: ProxyRecipe, data: str, panel: list[ArchSpec] | None = None) -> str:
    """What a run measures, as a digest: the space file (by content), the recipe and data, and the panel when
    it is fixed in advance. Every attribute a resumed study is checked against is in it (with the budget and
    seed, in the name), so a run is resumed only to measure the same thing again, never refused."""
    key = {"space": space_digest(space), "recipe": record.recipe_key(recipe, data)}
    if panel is not None:
        key["panel"] = sorted(s.id for s in panel)
    return digest(key)


def run_name(space: SearchSpace, budget: int, data: str, role: str, recipe: ProxyRecipe, panel: list[ArchSpec]) -> str:
    """A calibration run's study: another --budget, --points, space file or recipe is another run (a resumed
    one would mix two panels, or be refused); the same options find the same run, so nothing trains twice."""
    return f"calibrate-{space.name}-{format_budget(budget)}-{data}-{role}-{run_key(space, recipe, data, panel)}-seed{recipe.seed}"


def train_panel(opts, panel: list[ArchSpec], role: str, recipe: ProxyRecipe, name: str, console) -> optuna.Study:
    """One run: the panel trained by one recipe and seed, as its own study (resumed: trained points stay)."""
    run_search(
        SearchOptions(
            budget=opts.budget, space=opts.space, data=opts.data, storage=opts.storage, study_name=name,
            trials=len(panel), seed=recipe.seed, sampler="random", scheduler="none", ray=opts.ray, recipe=recipe,
            queue=panel, draws=False, role=role, artifact_dir=opts.artifact_dir,
        ),
        console=console,
    )
    return load_study(opts.storage, name)


def calibrate(opts: CalibrateOptions, console=None) -> dict:
    """Train the panel by both recipes and return the calibration figures (also stored on the proxy runs)."""
    if opts.proxy_seeds < 2:
        raise NasError("--proxy-seeds must be 2 or more: the noise between seeds is what calibration measures")
    space = load_space(opts.space)
    data = data_name(opts.data)
    panel = default_panel(opts.space, opts.budget, opts.points, opts.seed, opts.presets)
    if len(panel) < 3:
        raise NasError(f"a panel of {len(panel)} points cannot be ranked: raise --points or the budget")
    say = (lambda text: console.print(text, markup=False)) if console else print
    families = {f: sum(family(s) == f for s in panel) for f in FAMILIES}
    say(f"panel: {len(panel)} points ({', '.join(f'{n} {f}' for f, n in families.items())})")
    runs = []
    for role, recipe, seeds in (("proxy", opts.proxy, opts.proxy_seeds), ("reference", opts.reference, opts.reference_seeds)):
        for i in range(seeds):
            run = replace(recipe, seed=opts.seed + i, seeds=1)
            say(f"\n{role} recipe, seed {run.seed}")
            runs.append(train_panel(opts, panel, role, run, run_name(space, opts.budget, data, role, run, panel), console))
    frame = cal.runs_frame(runs)
    collapsed = collapsed_axes(space, opts.proxy.resolution, opts.proxy.stem_stride, opts.proxy.windows)
    figures = cal.figures(frame, collapsed)
    figures["proxy_recipe"] = opts.proxy.key
    figures["reference_recipe"] = opts.reference.key
    figures["data"] = data
    figures["space"] = space.source
    figures["space_sha256"] = space_digest(space)  # with the budget: where the calibration holds (calibration_for)
    figures["budget"] = opts.budget
    figures["panel"] = [
        {"id": s.id, "preset": s.name if s.name in preset_names() else None, "family": family(s), "macs": count(s).macs}
        for s in panel
    ]
    figures["studies"] = [s.study_name for s in runs]
    for study in runs:
        if study.user_attrs.get(record.STUDY_ROLE) == "proxy":
            study.set_user_attr(record.STUDY_CALIBRATION, figures)
    return figures



@dataclass
class ConfirmOptions:
    study: str | None = None
    storage: str = DEFAULT_STORAGE
    data: str | None = None
    recipe: ProxyRecipe = field(default_factory=ProxyRecipe)
    seeds: int = 2
    presets: bool = True
    ray: RayOptions = field(default_factory=RayOptions)
    artifact_dir: str = "nas-artifacts"


def confirm(opts: ConfirmOptions, console=None) -> dict:
    """Re-train a search's front and the in-budget presets by `opts.recipe` with `opts.seeds` seeds (each seed a
    study of its own, beside the search, resumed by the next confirm: points trained for an earlier front are
    not trained again, and only the current front and presets are judged); see `judge` for "confirmed". The
    result is stored on the search study."""
    from dashboards.front import pareto_frame

    if opts.seeds < 2:
        raise NasError("--reference-seeds must be 2 or more: confirming a difference needs its noise")
    search = load_study(opts.storage, opts.study)
    data = data_name(opts.data)
    if search.user_attrs.get(record.STUDY_DATA) not in (None, data):
        raise NasError(f"study {search.study_name!r} was run on {search.user_attrs[record.STUDY_DATA]}, not {data}: pass its --data")
    budget = search.user_attrs[record.STUDY_BUDGET]
    front = pareto_frame(search)
    if front.empty:
        raise NasError(f"study {search.study_name!r} has no front yet: nothing to confirm")
    trials = {t.number: t for t in search.get_trials(deepcopy=False)}
    panel = {record.spec_of(trials[int(n)]).id: record.spec_of(trials[int(n)]) for n in front["number"]}
    if opts.presets:
        panel.update({preset(n).id: preset(n) for n in preset_names() if count(preset(n)).macs <= budget})
    opts_run = CalibrateOptions(
        budget=budget, space=search.user_attrs.get(record.STUDY_SPACE), data=opts.data, storage=opts.storage,
        ray=opts.ray, artifact_dir=opts.artifact_dir,
    )
    space = load_space(opts_run.space)
    runs = []
    for i in range(opts.seeds):
        run = replace(opts.recipe, seed=opts.recipe.seed + i, seeds=1)
        name = f"{search.study_name}-confirm-{run_key(space, run, data)}-seed{run.seed}"
        study = train_panel(opts_run, list(panel.values()), "confirm", run, name, console)
        study.set_user_attr(record.STUDY_CONFIRMS, search.study_name)
        runs.append(study)
    scores = cal.runs_frame(runs).groupby("point").top1.agg(["mean", "std", "count"])
    scores = scores[scores.index.isin(list(panel))]  # the runs also hold the points of earlier fronts
    scores["se"] = scores["std"] / scores["count"] ** 0.5  # NaN where one seed alone scored the point
    label = {i: s.name or i for i, s in panel.items()}
    points = judge({str(int(r["number"])): r[record.SPEC_ID] for _, r in front.iterrows()}, scores, {i: count(s).macs for i, s in panel.items()}, label)
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": opts.recipe.key, "recipe_text": opts.recipe.describe(), "seeds": opts.seeds,
        "front": len(points), "confirmed": sum(p["confirmed"] for p in points.values()),
        "noise_unknown": sum(p["verdict"] == "noise unknown" for p in points.values()), "points": points,
        "presets": {
            label[i]: {"top1": float(scores["mean"][i]), "se": _known(scores["se"][i])}
            for i in scores.index if panel[i].name in preset_names()
        },
        "studies": [s.study_name for s in runs],
    }
    search.set_user_attr(record.STUDY_CONFIRMATION, result)
    return result


def _known(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def judge(front: dict[str, str], scores, macs: dict[str, int], label: dict[str, str]) -> dict[str, dict]:
    """Each front point (trial number -> id) at the higher fidelity: "beaten" when the best panel point with no
    more MACs beats it by the test the dominance report's "beats" uses (dashboards.front: one-sided, as the best
    of the points it was chosen among, Holm over the front points tested); "noise unknown" when its score has
    no noise (one seed scored it, or none), or the best point above it has none: neither is confirmed; else
    "confirmed". `scores`: mean, se per point id."""
    from dashboards.front import ALPHA, best_of_test, holm

    points, tested = {}, []
    for number, me in front.items():
        top1 = float(scores["mean"][me]) if me in scores.index else None
        se = _known(scores["se"][me]) if me in scores.index else None
        points[number] = {"id": me, "top1": top1, "se": se, "confirmed": True, "verdict": "confirmed", "beaten_by": []}
        others = [o for o in scores.index if o != me and macs[o] <= macs[me]]
        best = max(others, key=lambda o: scores["mean"][o]) if others else None
        gain = scores["mean"][best] - top1 if best is not None and top1 is not None else None
        best_se = _known(scores["se"][best]) if best is not None else None
        if se is None or (gain is not None and gain > 0 and best_se is None):
            points[number].update(confirmed=False, verdict="noise unknown")
        elif gain is not None and best_se is not None:
            _, p_selection = best_of_test(gain, float(np.hypot(best_se, se)), len(others))
            tested.append((number, best, p_selection, len(others)))
    adjusted, _ = holm([p for _, _, p, _ in tested])
    for (number, best, _, among), p in zip(tested, adjusted):
        points[number].update(p_value=p, chosen_among=among)
        if p < ALPHA:
            points[number].update(confirmed=False, verdict="beaten", beaten_by=[label[best]])
    return points
