"""The `nas` command: architectures, spaces, search, results (DESIGN §5: the user's side).

Every command has --help; tables for people, --json for scripts. A NasError (a problem the user can
fix) prints one line and exits 2; `nas --debug ...` shows the traceback instead.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import click

from searchspace.geometry import WINDOW_RULES
from trials.recipe import BASES, BENCH_RECIPE, REFERENCE_RECIPE, ProxyRecipe

from . import DEFAULT_STORAGE, __version__
from .console import emit_json, err, fail, out, table


class _Group(click.Group):
    """Turns user errors into one line and exit code 2, unless --debug."""

    def invoke(self, ctx):
        from searchspace import NasError

        try:
            return super().invoke(ctx)
        except NasError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            fail(str(exc))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, envvar="NAS_DEBUG", help="Show tracebacks of user errors.")
@click.version_option(__version__, prog_name="nas")
@click.pass_context
def main(ctx, debug):
    """Neural-architecture search over the unified design space of vision backbones.

    MACs follow the seed papers' 'FLOPs': multiply-accumulates of one 224x224 image, 1000 classes.
    """
    ctx.ensure_object(dict)["debug"] = debug


def budget_option(required: bool = False, help: str = "MACs budget: 4.5G, 800M, 4500000000 or 4.5e9.", default=None, band: bool = False):
    """--budget in MACs; with `band`, also a band LOW-HIGH (3.5G-4.5G), given as (low, high) (low None: no band)."""

    def convert(ctx, param, value):
        if value is None:
            return None
        from searchspace import parse_macs

        if band:
            low, dash, high = str(value).partition("-")
            return (parse_macs(low), parse_macs(high)) if dash and low.strip() else (None, parse_macs(value))
        return parse_macs(value)

    return click.option("--budget", required=required, callback=convert, help=help, default=default, show_default=default is not None)


# --- nas arch ----------------------------------------------------------------------------------------------
@main.group()
def arch():
    """Architectures: the seeds' presets and spec files."""


@arch.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--latency", is_flag=True, help="Also measure each preset here (latency, img/s: minutes on a CPU) beside its published GPU img/s.")
@click.option("--batch", type=click.IntRange(1), help="With --latency: the throughput batch.  [default: 8 on a CPU, 64 on CUDA]")
def arch_list(as_json, latency, batch):
    """The presets with their counted params and MACs beside the published figures."""
    from pathlib import Path

    import searchspace
    from searchspace import TOLERANCE, format_macs, format_params, preset_names, published

    from .cache import memo, source_digest

    # Counting needs the builder's modules, which load torch (seconds); the figures depend only on searchspace's
    # code and preset files, so they are kept in the cache folder and counted again when those change.
    counted = memo("presets.json", source_digest(Path(searchspace.__file__).parent), _count_presets)
    rows = []
    for name in preset_names():
        spec_id, params, macs = counted[name]
        ref = published(name)
        dp = params / (ref["params_m"] * 1e6) - 1
        dm = macs / (ref["macs_g"] * 1e9) - 1
        rows.append(
            {
                "name": name,
                "id": spec_id,
                "params": params,
                "macs": macs,
                "published_params": int(ref["params_m"] * 1e6),
                "published_macs": int(ref["macs_g"] * 1e9),
                "params_error": round(dp, 4),
                "macs_error": round(dm, 4),
                "within_tolerance": abs(dp) <= TOLERANCE["params"] and abs(dm) <= TOLERANCE["macs"],
                "top1": ref.get("top1"),
            }
        )
    agreement = None
    if latency:
        from .latency import preset_throughput, protocol_of

        measured, agreement = preset_throughput([r["name"] for r in rows], protocol_of(batch=batch))
        for row, figures in zip(rows, measured):
            row.update(figures)
    if as_json:
        return emit_json({"presets": rows, "throughput_agreement": agreement} if latency else rows)
    if latency:
        return _arch_list_latency(rows, agreement)
    table(
        "Presets (MACs of one 224x224 image, 1000 classes)",
        ["name", "id", "params", "published", "MACs", "published ", "ok", "ImageNet top-1"],
        [
            (
                r["name"],
                r["id"],
                format_params(r["params"]),
                f"{format_params(r['published_params'])} ({r['params_error']:+.1%})",
                format_macs(r["macs"]),
                f"{format_macs(r['published_macs'])} ({r['macs_error']:+.1%})",
                "yes" if r["within_tolerance"] else "NO",
                r["top1"],
            )
            for r in rows
        ],
        right=["params", "MACs", "ImageNet top-1"],
    )
    out.print(f"tolerance: params {TOLERANCE['params']:.0%}, MACs {TOLERANCE['macs']:.0%}")


def _count_presets() -> dict[str, list]:
    from searchspace import count, preset, preset_names

    return {name: [preset(name).id, *count(preset(name))] for name in preset_names()}


@arch.command("show")
@click.argument("name")
@click.option("--img-size", default=224, show_default=True, type=click.IntRange(8, 4096))
@click.option("--num-classes", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--latency", is_flag=True, help="Also measure its latency and throughput here (nas latency measure's protocol and defaults).")
def arch_show(name, img_size, num_classes, as_json, latency):
    """One architecture (a preset NAME or a spec / exported config FILE): spec, params, MACs by stage."""
    from searchspace import cost_by_part, format_macs, format_params, load_spec

    spec = load_spec(name)
    parts = cost_by_part(spec, img_size=img_size, num_classes=num_classes)
    params = sum(c.params for _, c in parts)
    macs = sum(c.macs for _, c in parts)
    measured = None
    if latency:
        from .latency import latency_block, protocol_of

        measured = latency_block(spec, protocol_of(img_size=img_size, num_classes=num_classes))
    if as_json:
        return emit_json(
            {
                **({"latency": measured} if latency else {}),
                "name": spec.name,
                "id": spec.id,
                "params": params,
                "macs": macs,
                "img_size": img_size,
                "num_classes": num_classes,
                "parts": [{"part": p, "params": c.params, "macs": c.macs} for p, c in parts],
                "spec": spec.to_dict(),
            }
        )
    out.print(f"[bold]{spec.label}[/bold]  id {spec.id}")
    if spec.notes:
        out.print(spec.notes, markup=False)
    out.print(f"{format_params(params)} params, {format_macs(macs)} MACs at {img_size}x{img_size}, {num_classes} classes")
    if measured:
        from .latency import print_latency_block

        print_latency_block(measured)
    out.print()
    table(
        None,
        ["part", "params", "MACs", "share of MACs"],
        [(p, format_params(c.params), format_macs(c.macs), f"{c.macs / macs:.1%}") for p, c in parts],
        right=["params", "MACs", "share of MACs"],
    )
    out.print()
    for line in spec.summary():
        out.print(line, markup=False)
    out.print()
    out.print(spec.to_yaml().rstrip(), markup=False)


def onnx_options(command):
    """--img-size, --num-classes and --opset of an ONNX export (nas arch export, nas export --onnx)."""
    command = click.option("--opset", type=int, help="ONNX opset, 18 to 23.  [default: 20, torch.onnx's]")(command)
    command = click.option("--num-classes", default=1000, show_default=True, type=click.IntRange(1), help="Classes of the ONNX model's head.")(command)
    return click.option("--img-size", default=224, show_default=True, type=click.IntRange(8, 4096), help="Input side of the ONNX model.")(command)


def write_onnx(spec, path: str, img_size: int, num_classes: int, opset: int | None, console) -> dict:
    """Export `spec` (seeded initial weights) to `path`, checked by onnxruntime; say so on `console`."""
    from searchspace.onnx_export import DEFAULT_OPSET, TOLERANCE, export_spec

    done = export_spec(spec, path, img_size=img_size, num_classes=num_classes, opset=opset or DEFAULT_OPSET)
    shape = "x".join(map(str, done.input_shape))
    if console is not None:
        console.print(
            f"{spec.name or 'the spec'} written to {path}: ONNX opset {done.opset}, {shape} input, "
            f"{len(done.data) / 2**20:.1f} MiB; onnxruntime's outputs within {done.max_abs_diff:.1e} of PyTorch's "
            f"(max abs diff, tolerance {TOLERANCE:.0e})",
            markup=False,
        )
    return {"name": spec.name, "id": spec.id, "path": path, "opset": done.opset, "input_shape": list(done.input_shape),
            "bytes": len(done.data), "max_abs_diff": done.max_abs_diff, "tolerance": TOLERANCE}


@arch.command("export")
@click.argument("name")
@click.option("--onnx", "onnx_path", required=True, help="Write the network here as an ONNX model.")
@onnx_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def arch_export(name, onnx_path, img_size, num_classes, opset, as_json):
    """One architecture (a preset NAME or a spec / exported config FILE) as an ONNX model with its initial
    weights, for deployment or latency. onnxruntime runs it beside PyTorch on one image, and it is written only
    when every output is within 1e-4; a kernel that cannot be exported is named."""
    from searchspace import load_spec

    result = write_onnx(load_spec(name), onnx_path, img_size, num_classes, opset, None if as_json else out)
    if as_json:
        emit_json(result)


# --- nas space ----------------------------------------------------------------------------------------------
@main.group()
def space():
    """Search spaces: the dimensions, their values, sampling."""


@space.command("show")
@click.argument("file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def space_show(file, as_json):
    """A space file's dimensions, cardinality, cheapest point and which presets lie inside (default: unified)."""
    from searchspace import format_macs, load_space, preset, preset_names

    sp = load_space(file)
    cheapest, cost = sp.cheapest()
    inside = {name: sp.why_not(preset(name)) for name in preset_names()}
    if as_json:
        return emit_json(
            {
                "name": sp.name,
                "source": sp.source,
                "description": sp.description,
                "stages": sp.num_stages,
                "dimensions": dict(sp.dimensions()),
                "cardinality": sp.cardinality(),
                "cheapest": {"id": cheapest.id, "macs": cost.macs, "params": cost.params},
                "presets_inside": [n for n, why in inside.items() if why is None],
                "presets_outside": {n: why for n, why in inside.items() if why is not None},
            }
        )
    out.print(f"[bold]{sp.name}[/bold]  ({sp.source})")
    if sp.description:
        out.print(sp.description, markup=False)
    table(None, ["dimension", "values"], sp.dimensions())
    out.print(f"\ncardinality: {sp.cardinality():,} points ({sp.cardinality():.2e})")
    out.print(f"cheapest point: {cheapest.id}, {format_macs(cost.macs)} MACs")
    out.print(f"presets inside: {', '.join(n for n, w in inside.items() if w is None) or 'none'}")
    for name, why in inside.items():
        if why is not None:
            out.print(f"  outside: {name} ({why})", markup=False)


@space.command("sample")
@click.argument("file", required=False)
@click.option("-n", "--n", "n", default=5, show_default=True, type=click.IntRange(1, 10000), help="How many points.")
@click.option("--seed", type=int, default=None, help="Random seed (reproducible draws).")
@budget_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def space_sample(file, n, seed, budget, as_json):
    """Random points of a space (default: unified), within --budget when given."""
    from searchspace import count, format_macs, format_params, load_space

    import random

    sp = load_space(file)
    if budget:
        specs = sp.sample_within(budget, n, seed)
    else:
        rng = random.Random(seed)
        specs = [sp.sample(rng) for _ in range(n)]
    rows = [(s, count(s)) for s in specs]
    if as_json:
        return emit_json([{"id": s.id, "params": c.params, "macs": c.macs, "spec": s.to_dict()} for s, c in rows])
    table(
        f"{len(rows)} points of {sp.name}" + (f" within {format_macs(budget)} MACs" if budget else ""),
        ["id", "params", "MACs", "stages"],
        [(s.id, format_params(c.params), format_macs(c.macs), "\n".join(s.summary())) for s, c in rows],
        right=["params", "MACs"],
    )
    if budget and len(rows) < n:
        out.print(f"only {len(rows)} distinct points within budget were found")


# --- shared options ----------------------------------------------------------------------------------------------
def _duration(ctx, param, value):
    if value is None:
        return None
    import re

    from searchspace import NasError

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(value))
    if not match or float(match.group(1)) <= 0:
        raise NasError(f"--time-limit {value!r}: write seconds or a duration such as 90s, 10m, 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _macs(ctx, param, value):
    if value is None:
        return None
    from searchspace import parse_macs

    return parse_macs(value)


def _milliseconds(ctx, param, value):
    """40ms, 40, 0.04s, 40 ms -> 40.0 (milliseconds)."""
    if value is None:
        return None
    import re

    from searchspace import NasError

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?(?:e-?\d+)?)\s*(ms|s)?\s*", str(value), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise NasError(f"--{param.name.replace('_', '-')} {value!r}: write a latency such as 40ms, 0.04s or 40 (milliseconds)")
    return float(match.group(1)) * (1000.0 if (match.group(2) or "ms").lower() == "s" else 1.0)


def _bytes(ctx, param, value):
    if value is None:
        return None
    import re

    from searchspace import NasError

    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise NasError(f"--{param.name.replace('_', '-')} {value!r}: write a size such as 500M or 4G")
    return int(float(match.group(1)) * 1024 ** "_KMGT".index(match.group(2).upper() or "_"))


def storage_option(f):
    return click.option(
        "--storage", default=DEFAULT_STORAGE, show_default=True, envvar="NAS_STORAGE",
        help="SQLAlchemy URL of the study storage (SQLite file, PostgreSQL, MySQL), or grpc://HOST:PORT of a `nas storage-proxy`.",
    )(f)


def _options(*options):
    """Apply click options in the order they are listed (so --help lists them so)."""

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def study_option(help: str):
    """--study NAME, the same on every command (--study-name: the same option)."""
    return click.option("--study", "--study-name", "study_name", help=help)


def ray_options(f):
    """Where and how the trials run, the same options on every command that trains; the command gets them as
    one `ray` argument (nas.search.RayOptions, whose fields the options are named after)."""

    @functools.wraps(f)
    def command(*args, **kwargs):
        from dataclasses import fields

        from .search import RayOptions

        return f(*args, ray=RayOptions(**{field.name: kwargs.pop(field.name) for field in fields(RayOptions)}), **kwargs)

    return _options(
        click.option("--address", help="Join an existing Ray cluster (ray://host:10001 or host:6379).  [default: local Ray]"),
        click.option("--cpus-per-trial", default=1.0, show_default=True, type=click.FloatRange(0.1)),
        click.option("--gpus-per-trial", type=click.FloatRange(0), help="Fractions allowed (0.5).  [default: 1 where the cluster has GPUs, else 0]"),
        click.option("--max-concurrent", type=click.IntRange(1), help="Trials at once.  [default: as many as the resources allow]"),
        click.option("--max-memory-per-trial", callback=_bytes, help="Host memory a trial may allocate (500M, 4G); beyond it the trial fails as out of memory."),
    )(command)


# --- proxy recipes -----------------------------------------------------------------------------------------------
def recipe_options(prefix: str, defaults: ProxyRecipe):
    """The options of a training recipe, named --PREFIX-epochs ... (the proxy's subset and held-out images are
    plain --subset, --held-out and --rung-held-out)."""
    subset = "--subset" if prefix == "proxy" else f"--{prefix}-subset"
    held_out = "--held-out" if prefix == "proxy" else f"--{prefix}-held-out"
    rung_held_out = "--rung-held-out" if prefix == "proxy" else f"--{prefix}-rung-held-out"
    options = [
        *([click.option("--proxy-base", type=click.Choice(list(BASES)), default="cpu", show_default=True,
                        help="The recipe the --proxy-* options, --subset and --held-out start from: cpu (their defaults below) "
                        "or gpu (112 px, width 0.5, 20000 images, batch 128); an option given overrides it.")]
          if prefix == "proxy" else []),
        click.option(f"--{prefix}-epochs", default=defaults.epochs, show_default=True, type=click.IntRange(1)),
        click.option(f"--{prefix}-resolution", default=defaults.resolution, show_default=True, type=click.IntRange(8, 512)),
        click.option(f"--{prefix}-stem-stride", type=click.Choice(["1", "2", "4"]), default=None,
                     help=f"Stage maps: input / stride, then halved per stage.  [default: the largest stride leaving the last map 2x2, as --{prefix}-resolution asks]"),
        click.option(f"--{prefix}-windows", default=defaults.windows, show_default=True, type=click.Choice(list(WINDOW_RULES)),
                     help="clamp: windows keep their size on the small maps; keep: they shrink so every stage keeps its full-size number of windows."),
        click.option(f"--{prefix}-width", default=defaults.width, show_default=True, type=click.FloatRange(0.05, 1.0), help="Width multiplier."),
        click.option(subset, f"{prefix}_subset", default=defaults.subset, show_default=True, type=click.IntRange(16), help="Training images."),
        click.option(held_out, f"{prefix}_held_out", type=click.IntRange(16), default=defaults.val_size, show_default=True,
                     help="Held-out images the final top-1 is measured on: the data's test split (Fashion-MNIST's t10k, CIFAR's test_batch, "
                     "an ImageFolder's val/ or test/), the same images for every trial and seed."),
        click.option(rung_held_out, f"{prefix}_rung_held_out", type=click.IntRange(16), default=defaults.rung_val_size, show_default=True,
                     help="The first of them that score a scheduler's rungs (a rank is decided there, not a score kept)."),
        click.option(f"--{prefix}-held-out-from", type=click.Choice(["test", "train"]), default=defaults.held_out_from, show_default=True,
                     help="test: the data's test split (a fixed draw of the training images where it has none); train: drawn from the training "
                     "images with the seed, as earlier versions did (to resume their studies)."),
        click.option(f"--{prefix}-clip-grad", type=click.FloatRange(0), default=defaults.clip_grad, show_default=True,
                     help="Clip the gradients' norm to this (0: no clipping): steadies the narrow networks that swung most between seeds."),
        click.option(f"--{prefix}-bn-batches", type=click.IntRange(0), default=defaults.bn_batches, show_default=True,
                     help="Re-estimate BatchNorm statistics on this many training batches before each evaluation (0: the running averages)."),
        click.option(f"--{prefix}-batch-size", default=defaults.batch_size, show_default=True, type=click.IntRange(1)),
        click.option(f"--{prefix}-lr", default=defaults.lr, show_default=True, type=click.FloatRange(0, min_open=True)),
        click.option(f"--{prefix}-seeds", default=defaults.seeds, show_default=True, type=click.IntRange(1),
                     help="Trainings per point (other initial weights and batch order); scored by their mean, with its standard error."
                     if prefix == "proxy" else "Reference trainings per point (another seed each)."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def recipe_from(kwargs: dict, prefix: str, seed: int) -> ProxyRecipe:
    """The recipe named by recipe_options' values (taken out of kwargs); with --proxy-base gpu, each option the
    user did not give takes the GPU recipe's value."""
    base = BASES[kwargs.pop("proxy_base", None) or "cpu"] if prefix == "proxy" else BASES["cpu"]
    ctx = click.get_current_context()
    field = {"subset": "subset", "held_out": "val_size", "rung_held_out": "rung_val_size"}

    def get(name):
        value = kwargs.pop(f"{prefix}_{name}")
        if base is not BASES["cpu"] and name != "seeds" and ctx.get_parameter_source(f"{prefix}_{name}") == click.core.ParameterSource.DEFAULT:
            return None if name == "stem_stride" else getattr(base, field.get(name, name))
        return value

    stride = get("stem_stride")
    return ProxyRecipe(
        epochs=get("epochs"), resolution=get("resolution"), width=get("width"), subset=get("subset"),
        val_size=get("held_out"), rung_val_size=get("rung_held_out"), held_out_from=get("held_out_from"),
        batch_size=get("batch_size"), lr=get("lr"), clip_grad=get("clip_grad"), bn_batches=get("bn_batches"), seed=seed,
        seeds=get("seeds"), stem_stride=int(stride) if stride else None, windows=get("windows"),
    )


# --- nas search ----------------------------------------------------------------------------------------------
@main.command()
@budget_option(required=True, band=True, help="MACs budget of the full-size network at 224: 4.5G, 800M, 4500000000, 4.5e9; or a band 3.5G-4.5G (points under it are refused too).")
@click.option("--min-macs", callback=_macs, help="A lower MACs bound (3.5G): the band from it to --budget; draws under it are never trained.")
@click.option("--latency", is_flag=True, help="Minimise latency (ms, batch 1) as a third objective.")
@click.option("--max-latency", callback=_milliseconds, help="A latency limit (40ms, 0.04s): draws over it are never trained; learned by the sampler as the budget is.")
@click.option("--latency-table", help="A predictor file of nas latency build (lat-DEVICE.json): latencies of that device, its measured points as measured.  [default: measured here, while no trial trains]")
@click.option("--latency-threads", type=click.IntRange(1), help="Measured here: torch threads.  [default: torch's, one per core; 1 with --latency-clock cpu]")
@click.option("--latency-clock", default="wall", show_default=True, type=click.Choice(["wall", "cpu"]),
              help="Measured here: wall, elapsed time; cpu, one thread's CPU time (on a shared machine other processes barely move it).")
@click.option("--space", "space_file", help="Space file or shipped space name.  [default: unified]")
@click.option("--data", envvar="NAS_DATA", help="ImageFolder tree, CIFAR-10 python folder or Fashion-MNIST IDX folder (or $NAS_DATA).  [default: Debian's Fashion-MNIST]")
@storage_option
@study_option("Study to create or resume.  [default: SPACE-BUDGET-DATA]")
@click.option("--trials", default=24, show_default=True, type=click.IntRange(1), help="Trials to train in this run.")
@click.option("--time-limit", callback=_duration, help="Stop after this long (90s, 10m, 2h); trials still training are cut (failed, marked cut_by_time_limit) and their points queued for the next run.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sampler, the data subset and the training.")
@click.option("--sampler", default="tpe", show_default=True, type=click.Choice(["tpe", "nsga2", "random", "gp"]))
@click.option(
    "--scheduler", default="pareto", show_default=True, type=click.Choice(["pareto", "asha", "none"]),
    help="Stop weak trials at half an epoch, then every doubling: pareto ranks them on both objectives (MO-ASHA), asha on proxy top-1 alone; none trains every trial fully.",
)
@ray_options
@recipe_options("proxy", ProxyRecipe())
@click.option("--baselines/--no-baselines", default=False, help="Train the presets that fit the budget first.")
@click.option("--artifact-dir", default="nas-artifacts", show_default=True, help="Where each finished trial's exported config is stored (Optuna artifacts).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and the front as JSON.")
def search(budget, min_macs, latency, max_latency, latency_table, latency_threads, latency_clock, space_file, data, storage,
           study_name, trials, time_limit, seed, sampler, scheduler, ray, baselines, artifact_dir, as_json, **recipe):
    """Search the space for the best proxy top-1 per MACs within --budget.

    An Optuna multi-objective study (maximise proxy top-1, minimise MACs, and with --latency minimise
    latency) in the storage; Ray Tune trains the trials. A draw that breaks a constraint (--budget, its
    band or --min-macs, --max-latency) is never trained. Rerun with the same study to resume: finished
    points are never trained twice.
    """
    from searchspace import NasError

    from .search import SearchOptions, run_search
    from .summary import print_search_summary

    band, budget = budget
    if band is not None and min_macs is not None:
        raise NasError("give the lower MACs bound once: --budget LOW-HIGH or --min-macs LOW")
    recipe = recipe_from(recipe, "proxy", seed)
    opts = SearchOptions(
        budget=budget, min_macs=band if band is not None else min_macs, latency=latency, max_latency_ms=max_latency,
        latency_table=latency_table, latency_threads=latency_threads, latency_clock=latency_clock, space=space_file, data=data, storage=storage, study_name=study_name, trials=trials,
        time_limit=time_limit, seed=seed, sampler=sampler, scheduler=scheduler, ray=ray, recipe=recipe,
        baselines=baselines, artifact_dir=artifact_dir,
    )
    summary = run_search(opts, console=err if as_json else out)  # --json: progress to stderr, JSON to stdout
    print_search_summary(summary, storage, as_json)


# --- nas calibrate ----------------------------------------------------------------------------------------------
@main.command()
@budget_option(default="4.5G", help="MACs budget of the panel's points.")
@click.option("--space", "space_file", help="Space file the panel's points are drawn from.  [default: unified]")
@click.option("--data", envvar="NAS_DATA", help="As for nas search (or $NAS_DATA).  [default: Debian's Fashion-MNIST]")
@storage_option
@click.option("--points", default=8, show_default=True, type=click.IntRange(0), help="Points drawn within the budget, beside the presets (convolution-like, attention and hybrid alike).")
@click.option("--presets/--no-presets", default=True, show_default=True, help="Put the in-budget presets in the panel.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the panel and of the first training.")
@recipe_options("proxy", ProxyRecipe(seeds=2))
@recipe_options("reference", REFERENCE_RECIPE)
@ray_options
@click.option("--export", "export_path", help="Also write every calibration run in the storage (all recipes) as CSV (.csv.gz: compressed).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def calibrate(budget, space_file, data, storage, points, presets, seed, ray, export_path, as_json, **recipes):
    """How far the proxy recipe's scores can be trusted, measured on a panel of architectures.

    The panel is trained by the proxy recipe with --proxy-seeds seeds (2 or more) and by the stronger
    reference recipe, each run its own study in the storage. Prints the seed-to-seed rank agreement and
    noise, the agreement with the reference and with the papers' ImageNet top-1 (beside MACs alone), each
    recipe's cost and the choices the proxy cannot see. Searches with the same recipe and data show it.
    """

    from .calibrate import CalibrateOptions
    from .calibrate import calibrate as run_calibration
    from .summary import print_calibration

    proxy = recipe_from(recipes, "proxy", seed)
    reference = recipe_from(recipes, "reference", seed)
    opts = CalibrateOptions(
        budget=budget, space=space_file, data=data, storage=storage, points=points, presets=presets,
        seed=seed, proxy=replace(proxy, seeds=1), proxy_seeds=proxy.seeds, reference=replace(reference, seeds=1),
        reference_seeds=reference.seeds, ray=ray,
    )
    figures = run_calibration(opts, console=err if as_json else out)
    if export_path:
        from dashboards.calibration import calibration_runs, runs_frame

        from .study import open_storage

        runs_frame(calibration_runs(open_storage(storage, heartbeat=False))).to_csv(export_path, index=False)
        err.print(f"every calibration run in the storage written to {export_path}", markup=False)
    if as_json:
        return emit_json(figures)
    print_calibration(figures)


@main.command()
@study_option("The search to confirm.  [default: the storage's only study]")
@storage_option
@click.option("--data", envvar="NAS_DATA", help="The search's data (ImageFolder, CIFAR-10 or IDX folder; or $NAS_DATA).  [default: Debian's Fashion-MNIST]")
@click.option("--presets/--no-presets", default=True, show_default=True, help="Re-train the in-budget presets beside the front.")
@recipe_options("reference", replace(REFERENCE_RECIPE, seeds=2))
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the first training.")
@ray_options
@click.option("--json", "as_json", is_flag=True, help="Print the confirmation as JSON.")
def confirm(study_name, storage, data, presets, seed, ray, as_json, **recipe):
    """Re-train a search's front and the in-budget presets at a higher fidelity, with several seeds.

    Each seed is a study of its own beside the search. A front point is confirmed when no point of that
    panel with no more MACs beats it at the higher fidelity by more than twice the noise; nas pareto, the
    report and the dashboard show which are.
    """
    from .calibrate import ConfirmOptions
    from .calibrate import confirm as run_confirm
    from .study import load_study
    from .summary import Results

    reference = recipe_from(recipe, "reference", seed)
    opts = ConfirmOptions(
        study=study_name, storage=storage, data=data, recipe=replace(reference, seeds=1), seeds=reference.seeds,
        presets=presets, ray=ray,
    )
    result = run_confirm(opts, console=err if as_json else out)
    if as_json:
        return emit_json(result)
    Results.of(load_study(storage, study_name)).print()


def _arch_list_latency(rows: list[dict], agreement: dict) -> None:
    """`nas arch list --latency` for people: measured latency and img/s beside the published GPU img/s."""
    from searchspace import format_macs

    table(
        f"Presets measured here (batch 1; img/s at batch {agreement['throughput_batch']}) beside their papers' GPU throughput",
        ["name", "MACs", "ms", "img/s here", "img/s published", "ImageNet top-1"],
        [
            (r["name"], format_macs(r["macs"]), f"{r['latency_ms']:.1f} ± {r['latency_iqr_ms'] / 2:.1f}",
             f"{r['images_per_second']:.1f}", r["published_images_per_second"] or "", r["top1"])
            for r in rows
        ],
        right=["MACs", "ms", "img/s here", "img/s published", "ImageNet top-1"],
    )
    tau = agreement["kendall_tau"]
    out.print(
        f"rank agreement of img/s here and published: Kendall tau {tau:+.2f} over the {agreement['presets']} presets that publish one"
        if tau is not None else "fewer than 3 presets publish a throughput: no rank agreement",
        markup=False,
    )
    out.print(f"device: {rows[0]['device']}", markup=False)


# --- nas latency --------------------------------------------------------------------------------------------
def protocol_options(f):
    """The timing protocol's options (searchspace.latency.Protocol), shared by nas latency measure and build."""
    return _options(
        click.option("--img-size", default=224, show_default=True, type=click.IntRange(8, 4096)),
        click.option("--num-classes", default=1000, show_default=True, type=click.IntRange(1)),
        click.option("--dtype", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16", "fp16"]), help="bf16 and fp16 (autocast) on CUDA only."),
        click.option("--threads", type=click.IntRange(1), help="torch threads.  [default: torch's, one per core]"),
        click.option("--channels-last", is_flag=True, help="Run the network and its input in channels-last memory format."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option("--clock", default="wall", show_default=True, type=click.Choice(["wall", "cpu"]),
                     help="wall: elapsed time. cpu: this process's CPU time on one thread (needs --threads 1): barely moved by other processes, for a shared machine."),
        click.option("--min-runs", default=15, show_default=True, type=click.IntRange(3), help="Timed runs at least (blocks of calls; the median is reported)."),
        click.option("--latency-backend", "backend", default="torch", show_default=True, type=click.Choice(["torch", "onnxruntime"]),
                     help="torch: the network as built here; onnxruntime: exported to ONNX (checked within 1e-4) and run on the CPU by onnxruntime."),
    )(f)


@main.group()
def latency():
    """Measured latency beside MACs: measure architectures here, build a per-device predictor, predict from it."""


@latency.command("measure")
@click.argument("refs", nargs=-1, required=True, metavar="NAME|FILE...")
@click.option("--batch", type=click.IntRange(0), help="The throughput batch (0: latency only).  [default: 8 on a CPU, 64 on CUDA]")
@protocol_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per architecture).")
def latency_measure(refs, batch, img_size, num_classes, dtype, threads, channels_last, device, clock, min_runs, backend, as_json):
    """Latency (batch 1, ms) and throughput (img/s) of full-size networks on this machine, with their spread.

    Each in eval mode under torch.inference_mode, timed by torch.utils.benchmark: warm-up, then at least
    --min-runs timed runs; the median, its interquartile range, and the device (CPU, cores, threads, GPU,
    torch and CUDA versions, load average when measured).
    """
    from .latency import measure, protocol_of

    protocol = protocol_of(img_size, num_classes, batch, dtype, threads, channels_last, device, clock, min_runs, backend)
    measure(list(refs), protocol, as_json)


@latency.command("build")
@click.option("--points", default=40, show_default=True, type=click.IntRange(1), help="Points of the space measured besides the presets.")
@click.option("-o", "--output", required=True, help="The predictor file to write, e.g. lat-laptop.json.")
@click.option("--space", "space_file", help="Space file or shipped space name.  [default: unified]")
@budget_option(default="4.5G", help="MACs budget the points (and presets) are drawn within.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the points drawn and of the folds.")
@click.option("--presets/--no-presets", default=True, show_default=True, help="Measure the presets within the budget too.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2), help="Held-out folds the predictors are compared on.")
@protocol_options
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
def latency_build(points, output, space_file, budget, seed, presets, folds, img_size, num_classes, dtype, threads,
                  channels_last, device, clock, min_runs, backend, as_json):
    """Measure the presets and --points points here and fit a latency predictor for this device.

    Two predictors, compared on held-out points (k-fold): a lookup table of the networks' parts (stem, each
    stage's block at its map size, downsampling, head: each timed once, summed, plus a fitted overhead) and
    a linear model of spec features (MACs by kind, elements, calls). The file holds the device, the
    protocol, every measured point (answered as measured), both predictors and their held-out figures, and
    names the better one as its predictor.
    """
    from .latency import build, protocol_of

    protocol = protocol_of(img_size, num_classes, 0, dtype, threads, channels_last, device, clock, min_runs, backend)
    opts = dict(space=space_file, budget=budget, points=points, seed=seed, presets=presets, folds=folds, protocol=protocol)
    build(opts, output, as_json)


@latency.command("predict")
@click.argument("table_path", metavar="TABLE")
@click.argument("refs", nargs=-1, required=True, metavar="NAME|FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def latency_predict(table_path, refs, as_json):
    """Latency (batch 1, ms) of architectures from a predictor file of nas latency build, and what answered:
    measured (the file measured it), lut or model."""
    from .latency import predict

    predict(table_path, list(refs), as_json)



# --- nas bench ----------------------------------------------------------------------------------------------
@main.group()
def bench():
    """The tabular benchmark: train a fixed set of points once, replay searches against it in seconds."""


@bench.command("build")
@budget_option(default="4.5G", help="MACs budget the points are drawn within.")
@click.option("--space", "space_file", help="Space file or shipped space name.  [default: unified]")
@click.option("--points", default=200, show_default=True, type=click.IntRange(1), help="Points in the table (a larger table extends a smaller one).")
@click.option("--data", envvar="NAS_DATA", help="ImageFolder tree, CIFAR-10 python folder or Fashion-MNIST IDX folder (or $NAS_DATA).  [default: Debian's Fashion-MNIST]")
@storage_option
@study_option("Study holding the table.  [default: bench-SPACE-BUDGET-DATA]")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the points drawn, the data subset and the training.")
@ray_options
@recipe_options("proxy", BENCH_RECIPE)
@click.option("--artifact-dir", default="nas-artifacts", show_default=True, help="Where each trained point's exported config is stored.")
@click.option("--export", "export_path", help="Write the table here (gzipped JSON), e.g. benchmarks/table-unified-4.5G.json.gz.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def bench_build(budget, space_file, points, data, storage, study_name, seed, ray, artifact_dir, export_path, as_json, **proxy):
    """Train --points seeded points of the space within --budget, each fully, evaluated every half epoch.

    Through Ray, as a search whose queue holds exactly the points; each point's learning curve is
    stored in the study, then its zero-cost scores. Rerun to continue: a trained point is never
    trained again. The default recipe is the search's on fewer training images (--subset).
    """
    from .bench import build_table
    from .search import SearchOptions

    opts = SearchOptions(
        budget=budget, space=space_file, data=data, storage=storage, study_name=study_name, seed=seed,
        ray=ray, recipe=recipe_from(proxy, "proxy", seed), artifact_dir=artifact_dir,
    )
    summary = build_table(opts, points, export_path, console=err if as_json else out)
    if as_json:
        return emit_json(summary)
    out.print(
        f"table {summary['study']!r}: {summary['points']} points ({summary['complete']} complete, {summary['failed']} failed), "
        f"{summary['trained_this_run']} trained this run, {summary['training_seconds'] / 60:.1f} min of training in all; "
        f"{summary['seconds'] / 60:.1f} min this run",
        markup=False,
    )
    if export_path:
        out.print(f"table written to {export_path} ({summary['export_bytes'] / 1024:.0f} KiB)", markup=False)


@bench.command("latency")
@click.option("--table", "table_path", help="A table written by nas bench build --export.  [default: benchmarks/table-unified-4.5G.json.gz]")
@click.option("-o", "--output", help="Write the table with its latency here.  [default: into the table file itself]")
@click.option("--fresh", is_flag=True, help="Measure every point again (default: only the points not measured yet).")
@click.option("--latency-table", "predictor_path", help="A predictor file of nas latency build: its predictions against the measurement.")
@click.option("--measured-in", help="Another table measured on this device by this protocol (an earlier build of the same points): "
              "a point it measured takes that latency instead of being measured again.")
@protocol_options
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_latency(table_path, output, fresh, predictor_path, measured_in, img_size, num_classes, dtype, threads, channels_last, device, clock,
                  min_runs, backend, as_json):
    """Measure the batch-1 latency of every point of a table here and write it into the table, with the device.

    The protocol of nas latency measure (the full-size network in eval mode, the median of at least
    --min-runs timed runs and its interquartile range). Each point's latency is written beside its curve as
    it is measured, so an interrupted run keeps what it measured: rerun to measure the rest (on the same
    device and protocol; --fresh starts over). Then MACs against latency (Kendall tau over the table and
    within 2.4-4.8 GMACs) and, with --latency-table, a predictor against the measurement. `nas bench run
    --objectives top1,latency` replays searches on this latency.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .bench import DEFAULT_TABLE, latency_agreement, measure_table_latency
    from .latency import protocol_of

    table_path = table_path or str(DEFAULT_TABLE)
    protocol = protocol_of(img_size, num_classes, 0, dtype, threads, channels_last, device, clock, min_runs, backend)
    predictor = None
    if predictor_path:  # read before minutes of measuring: a wrong path fails at once
        from searchspace.latency_table import LatencyTable

        predictor = LatencyTable.load(predictor_path)
    bar = Progress(
        TextColumn("latency"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
        TextColumn("{task.description}"), console=err, transient=False,
    )
    task = bar.add_task("", total=None)

    def progress(done, total, point, latency):
        if point is None:  # the first point is next: the bar shows from here on
            bar.start()
        bar.update(task, completed=done, total=total, description=f"{point.id}: {latency['ms']:.1f} ms" if point else "")

    target = output or table_path
    try:
        table = measure_table_latency(table_path, protocol, output, fresh, progress, say=lambda line: err.print(line, markup=False),
                                      measured_in=measured_in)
    except KeyboardInterrupt:
        bar.stop()
        err.print(f"interrupted: the points measured so far are in {target}; rerun to measure the rest", markup=False)
        raise SystemExit(130) from None
    finally:
        bar.stop()
    figures = latency_agreement(table, predictor)
    if as_json:
        return emit_json({"table": target, **figures})
    _print_table_latency(target, figures)


def _print_table_latency(path: str, f: dict) -> None:
    device = f["device"]
    where = device.get("gpu") or f"{device['cpu']}, {device['threads']} of {device['cores']} cores"
    runs = f.get("runs", [])
    loads = ", ".join(f"{'/'.join(format(x, '.1f') for x in r['load_average_start'])} to {'/'.join(format(x, '.1f') for x in r.get('load_average_end', r['load_average_start']))}" for r in runs)
    out.print(
        f"{path}: {f['measured']} of {f['points']} points measured on {where}; {device['backend']} {device['torch']}, "
        f"{device['dtype']}, clock {f['protocol'].get('clock', 'wall')}; load average {loads or 'not recorded'}",
        markup=False,
    )
    out.print(
        f"latency (batch 1): {f['ms'][0]:.1f} to {f['ms'][2]:.1f} ms, median {f['ms'][1]:.1f}; {f['ms_per_gmac'][0]:.1f} to "
        f"{f['ms_per_gmac'][2]:.1f} ms per GMAC, median {f['ms_per_gmac'][1]:.1f}; one figure's median IQR / median "
        f"{f['median_relative_iqr']:.1%}",
        markup=False,
    )
    low, high = f["class_gmacs"]
    within = (f"{f['class_macs_tau']:+.3f} among the {f['class_points']} of {low:g}-{high:g} GMACs" if f["class_points"] >= 2
              else f"fewer than 2 points of {low:g}-{high:g} GMACs")
    out.print(f"MACs against latency: Kendall tau {f['macs_tau']:+.3f} over the {f['measured']} points, {within}", markup=False)
    p = f.get("predictor")
    if p:
        held = p["held_out"]
        if held:
            sources = ", ".join(f"{n} {s}" for s, n in sorted(p["sources"].items()))
            out.print(
                f"predictor ({p['kind']}) against the measurement on the {held['n']} points it did not measure ({sources}): "
                f"Kendall tau {held['tau']:+.3f}, {held['within_10pct']:.0%} within 10%, median error {held['median_error']:.1%}",
                markup=False,
            )
        both = p.get("measured_by_both")
        if both:
            out.print(
                f"the {both['n']} points the predictor file measured too: its measurement against this one, Kendall tau "
                f"{both['tau']:+.3f}, median |difference| {both['median_abs_difference']:.1%}",
                markup=False,
            )
        if not p["same_device"]:
            d = p["device"]
            out.print(f"the predictor was built on another device: {d.get('gpu') or d.get('cpu')}, {d.get('threads')} threads, "
                      f"{d.get('backend')} {d.get('torch')}", markup=False)
        if p["protocol"].get("clock", "wall") != f["protocol"].get("clock", "wall"):
            out.print(f"the predictor timed by the {p['protocol'].get('clock', 'wall')} clock, the table by the "
                      f"{f['protocol'].get('clock', 'wall')} clock: the two do not compare in ms", markup=False)


@bench.command("run")
@click.option("--table", "table_path", help="A table written by nas bench build --export.  [default: benchmarks/table-unified-4.5G.json.gz]")
@click.option("--sampler", default="tpe", show_default=True, type=click.Choice(["tpe", "nsga2", "random", "gp"]))
@click.option("--scheduler", default="pareto", show_default=True, type=click.Choice(["pareto", "asha", "none"]))
@click.option("--seeds", default=10, show_default=True, type=click.IntRange(1), help="Replays, with seeds 0, 1, ...")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1), help="Trials trained at once (simulated).")
@click.option(
    "--budget-seconds", type=click.FloatRange(0, min_open=True),
    help="Simulated wall-clock seconds.  [default: what the workers need for 24 full trainings, a default search]",
)
@click.option(
    "--objectives", "objectives_text", default="top1,macs", show_default=True,
    help="The search's objectives: top1 and macs, latency or both (latency: the table's, measured by nas bench latency).",
)
@click.option("--json", "as_json", is_flag=True, help="Print every replay's trace as JSON.")
def bench_run(table_path, sampler, scheduler, seeds, workers, budget_seconds, objectives_text, as_json):
    """Replay searches against a table, in seconds: the hypervolume of their fronts on a simulated clock.

    The real searcher, sampler and scheduler; each trial reports what it would report under --scheduler,
    at the wall-clock seconds the table measured (training, evaluations, Ray's start; older tables: the
    training alone), --workers trials at a time (nas/replay.py says how a draw is answered). The table
    shows the trials each rung (in epochs) stopped; the hypervolume, in --objectives, is printed with its
    reference point. --objectives top1,latency searches on the latency the table measured (nas bench latency),
    told to the sampler and ranked on by the scheduler as in a search with that objective.
    """
    import numpy as np

    from dashboards.pareto import REFERENCE

    from .bench import DEFAULT_TABLE, Table, objective_keys, parse_objectives
    from .replay import replay

    table_path = table_path or str(DEFAULT_TABLE)
    table = Table.load(table_path)
    objectives = parse_objectives(objectives_text)
    table.check_objectives(objectives)
    runs = [replay(table, sampler, scheduler, seed, workers, budget_seconds, objectives=objectives) for seed in range(seeds)]
    point = table.reference_point(objectives)
    reference = {**dict(zip(objective_keys(objectives), point)), "normalised": [REFERENCE] * len(objectives)}
    whole = table.hypervolume(table.points, objectives)
    if as_json:
        return emit_json({
            "table": table_path, "objectives": list(objectives), "reference_point": reference, "table_front_hypervolume": whole,
            "latency_device": table.latency["device"] if "latency" in objectives else None, "runs": [r.summary() for r in runs],
        })
    table_rows = [
        (r.seed, f"{r.hypervolume:.4f}", r.tally.complete, r.tally.pruned,
         ", ".join(f"{n} at {rung:g}" for rung, n in r.stopped_per_rung.items()) or "-", r.tally.failed, f"{r.suggest_seconds:.1f}s")
        for r in runs
    ]
    from .console import table as print_table

    print_table(
        f"{sampler} + {scheduler} on {', '.join(objectives)}: {workers} workers, {runs[0].budget_seconds:.0f} simulated seconds",
        ["seed", "hypervolume", "complete", "pruned", "stopped at rung (epochs)", "failed", "sampler time"], table_rows,
        right=["hypervolume", "complete", "pruned", "failed", "sampler time"],
    )
    low, median, high = np.percentile([r.hypervolume for r in runs], [25, 50, 75])
    out.print(
        f"hypervolume in ({', '.join(objectives)}): median {median:.4f}, interquartile range {low:.4f}-{high:.4f} over "
        f"{len(runs)} seeds (the table's whole front: {whole:.4f})",
        markup=False,
    )
    units = {"top1": lambda v: f"{v:.1f}% top-1", "macs": lambda v: f"{v / 1e9:.2f} GMACs", "latency": lambda v: f"{v:.1f} ms"}
    out.print(
        f"objectives normalised to the table front's box; reference point ({', '.join(format(REFERENCE, 'g') for _ in objectives)}) = "
        f"{', '.join(units[name](value) for name, value in zip(objectives, point))}",
        markup=False,
    )
    if "latency" in objectives:
        from searchspace.latency import Device

        out.print(f"latency measured on {Device.from_dict(table.latency['device']).describe()}", markup=False)
    if any(r.exhausted for r in runs):
        out.print("some replays tried every table point before the budget ran out: the budget is too large for the table", markup=False)


# --- results ------------------------------------------------------------------------------------------------
@main.command()
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def studies(storage, as_json):
    """The studies in a storage with their trial counts by state."""
    import optuna

    from trials import record

    from .study import masked, open_storage, storage_errors

    store = open_storage(storage, heartbeat=False)
    rows = []
    with storage_errors(storage):
        for frozen in store.get_all_studies():  # their attributes; the trials come through the cache
            trials = optuna.load_study(study_name=frozen.study_name, storage=store).get_trials(deepcopy=False)
            states = {}
            for t in trials:
                states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
            budget = frozen.user_attrs.get(record.STUDY_BUDGET)
            rows.append({"study": frozen.study_name, "trials": len(trials), **states, "budget_macs": budget, "data": frozen.user_attrs.get(record.STUDY_DATA)})
    if as_json:
        return emit_json(rows)
    from searchspace import format_macs

    out.print(f"studies in {masked(storage)}")
    table(
        None,
        ["study", "trials", "complete", "pruned", "failed", "running", "budget", "data"],
        [
            (r["study"], r["trials"], r.get("complete", 0), r.get("pruned", 0), r.get("fail", 0), r.get("running", 0),
             format_macs(r["budget_macs"]) if r["budget_macs"] else "", r["data"] or "")
            for r in rows
        ],
        right=["trials", "complete", "pruned", "failed", "running", "budget"],
    )


@main.command()
@study_option("Study name.  [default: the storage's only study]")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the front as CSV.")
def pareto(study_name, storage, as_json, as_csv):
    """The Pareto front of a study with its noise (and confirmation), and the seed networks it beats beyond the noise."""
    from .study import load_study
    from .summary import Results

    study = load_study(storage, study_name)
    results = Results.of(study)
    if as_csv:
        return click.echo(results.front.to_csv(index=False), nl=False)
    if as_json:
        return emit_json({"study": study.study_name, **results.as_json()})
    results.print()


@main.command()
@study_option("Study name.  [default: the storage's only study]")
@storage_option
@click.option("--trial", "number", type=click.IntRange(0), help="Trial number to export.")
@click.option("--best", is_flag=True, help="The best proxy top-1 on the front within --budget.")
@budget_option(help="With --best: the MACs limit.  [default: the study's budget]")
@click.option("-o", "--output", help="Write the config here.  [default: standard output]")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), help="[default: from the file name, else yaml]")
@click.option("--onnx", "onnx_path", help="Write the architecture as an ONNX model here (seeded initial weights); the config then only with -o.")
@onnx_options
def export(study_name, storage, number, best, budget, output, fmt, onnx_path, img_size, num_classes, opset):
    """A trial's architecture as a model config that builds here and with timm.create_model('nas_unified'),
    or (--onnx) as an ONNX model checked with onnxruntime."""
    from searchspace import NasError

    from .export import dump, model_config, pick_trial, write
    from .study import load_study

    if best == (number is not None):
        raise NasError("export needs exactly one of --trial N and --best")
    study = load_study(storage, study_name)
    trial = pick_trial(study, number, best, budget)
    fmt = fmt or ("json" if output and output.endswith(".json") else "yaml")
    config = model_config(study, trial, storage)
    if output or not onnx_path:
        write(dump(config, fmt), output)
    if output:
        err.print(f"trial {trial.number} of {study.study_name!r} written to {output}", markup=False)
    if onnx_path:
        from searchspace import spec_from_data

        write_onnx(spec_from_data(config["spec"], f"trial {trial.number}"), onnx_path, img_size, num_classes, opset, err)


@main.command("storage-proxy")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback unless you open it).")
@click.option("--port", default=13000, show_default=True, type=click.IntRange(1, 65535))
def storage_proxy(storage, host, port):
    """Optuna's gRPC storage proxy in front of --storage, for many searches at once: each runs with
    --storage grpc://HOST:PORT and the proxy holds the one pool of database connections and the trial cache.

    Heartbeats do not pass through the proxy: a search killed meanwhile leaves its trials RUNNING until a
    search on --storage itself fails them (nas search --storage URL fails stale trials as it starts).
    """
    import optuna

    from .study import masked, open_storage

    store = open_storage(storage, heartbeat=False)
    out.print(f"Optuna storage proxy for {masked(storage)} at grpc://{host}:{port} (Ctrl-C stops it)", markup=False)
    try:
        optuna.storages.run_grpc_proxy_server(store, host=host, port=port)
    except ImportError:
        from searchspace import NasError

        raise NasError("nas storage-proxy needs grpcio: pip install 'nas-unified[grpc]'") from None


@main.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback unless you open it).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--artifact-dir", default="nas-artifacts", show_default=True, help="Where exported configs are stored as artifacts.")
def dashboard(storage, host, port, artifact_dir):
    """optuna-dashboard on the storage, with Pareto and hypervolume figures, notes and exported configs."""
    from pathlib import Path

    import optuna

    from dashboards.dashboard import publish, serve

    from .export import dump, model_config
    from .study import masked, open_storage, storage_errors

    store = open_storage(storage, heartbeat=False)
    with storage_errors(storage):
        for frozen in store.get_all_studies():
            study = optuna.load_study(study_name=frozen.study_name, storage=store)
            done = publish(study, lambda trial, study=study: dump(model_config(study, trial, storage), "yaml"), Path(artifact_dir))
            out.print(f"{study.study_name}: {done['figures']} figures, {done['notes']} new notes, {done['artifacts']} new configs", markup=False)
    out.print(f"optuna-dashboard on {masked(storage)} at http://{host}:{port}/dashboard (Ctrl-C stops it)", markup=False)
    serve(store, host, port, Path(artifact_dir))


@main.command()
@study_option("Study name.  [default: the storage's only study]")
@storage_option
@click.option("-o", "--output", default="report.html", show_default=True, help="The HTML report.")
@click.option("--png", "png", is_flag=False, flag_value="", default=None, help="Also a PNG picture (default: OUTPUT with .png).")
def report(study_name, storage, output, png):
    """An HTML report: the front with presets and budget, hypervolume, best architecture per MACs bucket."""
    from pathlib import Path

    from dashboards.report import render_html, render_png
    from searchspace import NasError

    from .study import load_study, masked

    study = load_study(storage, study_name)
    html = render_html(study, masked(storage))
    try:
        Path(output).write_text(html)
    except OSError as exc:
        raise NasError(f"cannot write {output}: {exc.strerror or exc}") from None
    out.print(f"report of {study.study_name!r} written to {output}", markup=False)
    if png is not None:
        target = Path(png or Path(output).with_suffix(".png"))
        render_png(study, target)
        out.print(f"picture written to {target}", markup=False)


if __name__ == "__main__":  # pragma: no cover
    main()
