"""The bodies of ``python -m signseg_core neurons COMMAND`` (paper §4.6): fit, ablate,
population, Dale features, diverse set, localize, demo. Loaded only when one of them runs
(:mod:`signseg_core.cli.neurons` holds their parser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from signseg_core.cli.options import settings_from_args, signs_from_args
from signseg_core.figures.export import image_png
from signseg_core.figures.neuron_plots import population_response_figure
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import load_image
from signseg_core.neurons.data import load_neuron_data
from signseg_core.neurons.demo import write_demo_dataset
from signseg_core.neurons.extrapolation import (
    model_extrapolation_test,
    recorded_extrapolation_table,
)
from signseg_core.neurons.fitting import check_min_sd_ratio
from signseg_core.neurons.localize import mask_overlay
from signseg_core.neurons.population import (
    align_conditions,
    model_population_table,
    population_over_models,
    read_conditions,
    recorded_population_table,
)
from signseg_core.neurons.response_files import image_problem
from signseg_core.neurons.study import (
    ablate_neuron,
    dale_features_table,
    fit_study,
    localize_and_clear,
    models_needed,
    neuron_readout_model,
    top_agreement,
)
from signseg_core.stimuli.diverse import contact_sheet, diverse_set_from_folder, write_selection


def _fmt3(value: float) -> str:
    return f"{value:.3f}"


def _bar(args, total: int, desc: str, unit: str):

    bar = tqdm(total=total, desc=desc, unit=unit, disable=args.quiet, file=sys.stderr)

    def progress(done, total_now, *_):
        bar.total = total_now
        bar.update(done - bar.n)

    return bar, progress


def _study(args):
    """Load the data (first, so bad data fails before any model loads), the model, the fits."""
    dataset = load_neuron_data(args.data, image_dir=args.images, min_images=args.min_images)
    check_min_sd_ratio(args.min_sd_ratio)
    model = load_model(args.model, device=args.device)
    bar, progress = _bar(args, dataset.n_images, "features", "img")
    with bar:
        study = fit_study(model, dataset, test_fraction=args.test_fraction,
                          seed=args.split_seed, min_sd_ratio=args.min_sd_ratio,
                          progress=progress)
    return model, study


FIT_COLUMNS = ["neuron", "session", "area", "monkey", "r2_train", "r2_test", "r2_train_pearson",
               "r2_test_pearson", "positive_negative_ratio", "n_positive", "n_negative"]
R2_LEGEND = ("r2_train, r2_test: coefficient of determination 1 - SS_res/SS_tot (sklearn "
             "r2_score); r2_*_pearson: squared Pearson correlation of recorded and predicted "
             "responses")


def cmd_fit(args: argparse.Namespace) -> int:
    _, study = _study(args)
    filtered = (f"features below {study.min_sd_ratio:g} x the median SD left out"
                if study.min_sd_ratio else "every varying feature kept, as the paper")
    print(f"{len(study.neurons)} neuron models on {study.model_name} features "
          f"({study.dataset.n_images} images, {study.n_features} features; {filtered})")
    print(study.table[FIT_COLUMNS].to_string(index=False, float_format=_fmt3))
    print("\nbest per session (by test r², the coefficient of determination):")
    print(study.best[FIT_COLUMNS].to_string(index=False, float_format=_fmt3))
    print(f"\n{R2_LEGEND}")
    s = study.summary()
    print(f"best per session over {s['n_sessions']} sessions, mean ± SD: test r² "
          f"{s['best_r2_test_mean']:.3f} ± {s['best_r2_test_sd']:.3f} (determination), "
          f"{s['best_r2_test_pearson_mean']:.3f} ± {s['best_r2_test_pearson_sd']:.3f} "
          f"(squared Pearson); positive/negative weight ratio {s['ratio_mean']:.3f} ± "
          f"{s['ratio_sd']:.3f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        study.table.to_csv(out / "neuron_fits.csv", index=False)
        study.best.to_csv(out / "best_per_session.csv", index=False)
        print(f"wrote {out / 'neuron_fits.csv'} and {out / 'best_per_session.csv'}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:

    model, study = _study(args)
    study.index(args.neuron)  # an unknown neuron fails before the evolution starts
    settings = settings_from_args(args)
    bar, progress = _bar(args, settings.generations, "generations", "gen")
    with bar:
        ablation = ablate_neuron(model, study, args.neuron, settings=settings,
                                 alphas=args.alphas, signs=signs_from_args(args), progress=progress,
                                 batch_size=args.batch_size)
    table = ablation.table
    print(f"neuron {ablation.neuron} ({ablation.model_name}); largest predicted response to a "
          f"natural image: {ablation.natural_max_predicted:.3f}")
    print(table.drop(columns=["neuron"]).to_string(index=False, float_format=_fmt3))
    stored = int(table["from_store"].sum())
    print(f"{len(table)} conditions ({stored} from the store) x {settings.restarts} restarts")
    control = [r for r in ablation.results if r.key.sign == "control"]
    if control:
        test = model_extrapolation_test(study, ablation.neuron, control[0].intact_scores)
        print(f"Fig. 21 left, in silico: the intact model's predicted response to its "
              f"{test.n_a} preferred images vs its {test.n_b} natural images: {test.summary()}")
    if args.population:
        population = model_population_table(model, study, ablation.results)
        print(f"\nFig. 7 right, in silico: the {len(study.neurons)} neuron models' response to "
              "these images, z-scored over their responses to the natural images")
        print(population.to_string(index=False, float_format=_fmt3))
    if args.out:
        _write_ablation(Path(args.out), ablation)
    return 0


def _write_ablation(out: Path, ablation) -> None:
    """The table, a contact sheet of the best images, every image, and the conditions file that
    ``neurons population`` reads once a population has been recorded on those images."""
    out.mkdir(parents=True, exist_ok=True)
    table, stem = ablation.table, f"ablation_{ablation.neuron}"
    table.to_csv(out / f"{stem}.csv", index=False)
    order = {(r.key.sign, r.key.alpha): r for r in ablation.results}
    results = [order[(s, a)] for s, a in zip(table["sign"], table["alpha"])]
    sheet = contact_sheet([r.best_image for r in results], columns=min(len(results), 11),
                          labels=list(table["condition"]))
    (out / f"{stem}.png").write_bytes(image_png(sheet))
    (out / f"{stem}_images").mkdir(exist_ok=True)
    rows = []
    for r in results:
        for k, image in enumerate(r.images):
            name = f"{stem}_images/{r.condition.label.replace(' ', '_')}_r{k}.png"
            (out / name).write_bytes(image_png(image))
            rows.append({"image": name, "sign": r.key.sign, "alpha": r.key.alpha,
                         "model": ablation.neuron, "restart": k,
                         "predicted_response": float(r.intact_scores[k])})
    pd.DataFrame(rows).to_csv(out / f"{stem}_conditions.csv", index=False)
    print(f"wrote {out / (stem + '.csv')}, {out / (stem + '.png')}, {len(rows)} images in "
          f"{out / (stem + '_images')} and {out / (stem + '_conditions.csv')}")


def cmd_population(args: argparse.Namespace) -> int:

    dataset = load_neuron_data(args.data, image_dir=args.images, min_images=1)
    folder = Path(args.images) if args.images else Path(args.data).expanduser().parent
    conditions = align_conditions(dataset, read_conditions(args.conditions), folder)
    reference = (None if args.reference is None else
                 load_neuron_data(args.reference, image_dir=args.reference_images, min_images=1))
    table = recorded_population_table(dataset, conditions, reference=reference)
    where = ("its responses to the natural images of the reference" if reference is not None
             else f"its responses to all {dataset.n_images} images of the file")
    print(f"{dataset.n_neurons} neurons, {dataset.n_images} images; each neuron z-scored over "
          f"{where}; population average per image, then mean over the condition's images")
    models = list(dict.fromkeys(table["model"]))
    for model in models:
        part = table[table["model"] == model]
        print(f"\nmodel {model or '(none given)'}:")
        print(part.drop(columns="model").to_string(index=False, float_format=_fmt3))
    if len(models) > 1:
        print(f"\nmean over {len(models)} models (95% CI over models; paired t-test against "
              "the control):")
        print(population_over_models(table).to_string(index=False, float_format=_fmt3))
    if reference is not None:
        tests = recorded_extrapolation_table(dataset, conditions, reference,
                                             n_permutations=args.permutations, seed=args.seed)
        print("\nFig. 21 left: each modelled neuron's responses to its intact model's images vs "
              "to the natural images (permutation t-test, one-sided, Student's t):")
        print(tests.to_string(index=False, float_format=lambda v: f"{v:.3g}") if len(tests)
              else "no modelled neuron (conditions' model column) is in both files")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        over = population_over_models(table) if len(models) > 1 else table
        population_response_figure(over).write_html(args.html, include_plotlyjs=True)
        print(f"wrote {args.html}")
    return 0


def cmd_dale_features(args: argparse.Namespace) -> int:

    _, study = _study(args)
    neurons = study.best_neurons if args.best_only else None
    table = dale_features_table(study, alpha=args.alpha, neurons=neurons)
    n_models = len(neurons) if neurons is not None else len(study.neurons)
    consistent = table[table["label"] != "mixed"].sort_values(["label", "p_bonferroni"])
    cols = ["feature", "label", "n_positive", "n_negative", "agreement", "p_bonferroni",
            "mean_normalized_weight"]
    counts = consistent["label"].value_counts()
    print(f"{len(consistent)} of {len(table)} features consistent across {n_models} neuron "
          f"models (Bonferroni alpha {args.alpha}): "
          f"{counts.get('consistent-positive', 0)} positive, "
          f"{counts.get('consistent-negative', 0)} negative")
    if len(consistent):
        print(consistent[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    else:
        floor = min(1.0, 2 * 0.5 ** n_models * len(table))
        print(f"none: with {n_models} models the smallest possible Bonferroni p is {floor:.3g} "
              f"({models_needed(len(table), alpha=args.alpha)} models are needed). "
              "Most one-signed features:")
        top = top_agreement(table, args.top)
        print(top[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


def cmd_diverse_set(args: argparse.Namespace) -> int:

    for folder in (args.folder, args.pool):
        if folder is not None and not Path(folder).is_dir():
            raise ValueError(f"image folder {folder!r} does not exist or is not a folder")
    model = load_model(args.model, device=args.device)
    steps = 3 if args.pool else 2
    bar, progress = _bar(args, steps, "diverse set", "step")
    with bar:
        sel = diverse_set_from_folder(model, args.folder, k=args.k,
                                      n_components=args.n_components, seed=args.seed,
                                      pool_folder=args.pool, progress=progress)
    for rank, path in enumerate(sel.paths):
        print(f"{rank}\t{path}")
    print(f"{sel.k} of {sel.n_candidates} images; {sel.n_components} PCA components explain "
          f"{sel.explained_variance:.1%} of the variance of {sel.n_space} images' outputs")
    if args.out:
        print(f"wrote {write_selection(sel, args.out)}")
    if args.sheet:
        sheet = contact_sheet(sel.paths, columns=min(args.columns, sel.k), labels=True)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        Path(args.sheet).write_bytes(image_png(sheet))
        print(f"wrote {args.sheet}")
    return 0


def cmd_localize(args: argparse.Namespace) -> int:

    if not Path(args.image).is_file():
        raise ValueError(f"image {args.image!r} not found")
    if problem := image_problem(Path(args.image)):  # before any model loads
        raise ValueError(f"image {args.image!r} {problem}")
    if args.data is not None and args.neuron is None:
        raise ValueError("--data needs --neuron ID (the neuron model to localize)")
    if args.neuron is not None and args.data is None:
        raise ValueError("--neuron needs --data (the responses the neuron model is fitted on)")
    image = load_image(args.image)
    if args.data is not None:
        model, study = _study(args)
        scorer = neuron_readout_model(model, study, [study.fit(args.neuron).neuron])
        what, unit = f"neuron {args.neuron}", 0
    else:
        model = scorer = load_model(args.model, device=args.device)
        if not 0 <= args.unit < model.n_classes:
            raise ValueError(f"unit {args.unit} is out of range 0..{model.n_classes - 1}")
        what, unit = f"unit {args.unit} ({model.class_names[args.unit]})", args.unit
    loc, clearing = localize_and_clear(
        lambda x: scorer(x)[:, unit], image, fill=args.fill, n_disks=args.n_disks,
        diameter=args.diameter, sigma=args.sigma, threshold=args.threshold, seed=args.seed)
    print(f"{what} of {model.name} on {Path(args.image).name} "
          f"({image.shape[2]}x{image.shape[1]} px)")
    print(f"localized region: {loc.area_fraction:.1%} of the image "
          f"({args.n_disks} disks of {loc.diameter} px, sigma {loc.sigma:g} px)")
    if args.data is not None:
        test = model_extrapolation_test(study, args.neuron, [loc.intact])
        print(f"Fig. 21 left, in silico: predicted response to this image vs to the "
              f"{test.n_b} natural images: {test.summary()}")
    if clearing is None:
        print("no region: no perturbation lowered the response, so there is nothing to keep "
              "and nothing was cleared")
    else:
        print(f"response intact {clearing.intact:.4f}, background cleared ({args.fill}) "
              f"{clearing.cleared:.4f}: relative change {clearing.relative_change:+.1%}")
    out = Path(args.out) if args.out else Path(f"{Path(args.image).stem}_overlay.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(image_png(mask_overlay(image, loc)))
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:

    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ValueError(f"{args.out_dir} is a file, not a folder: give the folder to write the "
                         "demo dataset into (it is created if missing)")
    bar, progress = _bar(args, args.n_images, "features", "img")
    with bar:
        path = write_demo_dataset(args.out_dir, n_images=args.n_images, n_neurons=args.n_neurons,
                                  n_sessions=args.n_sessions, noise=args.noise, seed=args.seed,
                                  model_name=args.model, image_size=args.image_size,
                                  device=args.device, progress=progress)
    print(f"wrote {args.n_images} images, {args.n_neurons} neurons: {path}")
    print(f"ground truth: {path.parent / 'planted_weights.npz'}")
    print(f"next: python -m signseg_core neurons fit {path} --model {args.model}")
    return 0
