"""``python -m signseg_core neurons ...``: the neuron-model workflow from a terminal.

Subcommands: ``fit`` (PLS model per neuron, best per session), ``ablate`` (preferred images of a
neuron model under sign ablation), ``population`` (the recorded population's z-scored response to
those images, Fig. 7 right), ``dale-features`` (features every model weights alike),
``diverse-set`` (a stimulus set spanning a model's outputs), ``localize`` (where in an image a
unit or neuron model's response comes from, and the effect of clearing the rest), ``demo`` (a
synthetic data set). Heavy imports happen inside the handlers, so ``--help`` stays fast; errors
(e.g. a bad data file, listing every bad row) reach ``cli.main``, which prints ``error: ...``
and exits 2.
"""

from __future__ import annotations

import argparse

from signseg_core.cli.options import add_evolution_args, command

DEFAULT_MODEL = "efficientnet_lite0"


# -- parser ---------------------------------------------------------------------------------------

def _add_data_args(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    if data:
        p.add_argument("data", help="responses: .csv (image, neuron, response[, session, area, "
                                    "monkey]) or .npz")
    p.add_argument("--images", default=None, help="image folder (default: the data file's)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="network whose features model the "
                                                          "neurons")
    p.add_argument("--min-images", type=int, default=10,
                   help="fewest images a neuron must have responses to")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out fraction")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument("--min-sd-ratio", type=float, default=0.0,
                   help="leave out of each fit the features whose SD over the training images "
                        "is below this fraction of the median feature SD (default 0, the "
                        "paper's: keep every varying feature; e.g. 1e-3 stops nearly silent "
                        "features from getting huge 1/SD weights that rule the sign ratio)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_neurons_parser(sub) -> None:
    """Register ``neurons`` and its subcommands on ``cli.build_parser``'s subparsers."""
    top = sub.add_parser("neurons", help="models of recorded neurons (fit, ablate, Dale-like "
                                         "features, diverse set, localize, demo)",
                         description=__doc__.split("\n")[0])
    nsub = top.add_subparsers(dest="neurons_command", required=True)

    p = nsub.add_parser("fit", help="PLS model per neuron; table and best per session")
    _add_data_args(p)
    p.add_argument("--out", default=None,
                   help="also write neuron_fits.csv and best_per_session.csv to this folder")
    p.set_defaults(func=command("neuron_commands", "cmd_fit"))

    p = nsub.add_parser("ablate", help="preferred images of a neuron model under sign ablation")
    _add_data_args(p)
    p.add_argument("--neuron", required=True, help="neuron id")
    add_evolution_args(p)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--population", action="store_true",
                   help="also the in-silico Fig. 7 right: every neuron model's response to these "
                        "images, z-scored over its responses to the natural images")
    p.add_argument("--out", default=None,
                   help="also write the table (CSV), a contact sheet (PNG), every image (PNG) "
                        "and a conditions file for `neurons population`")
    p.set_defaults(func=command("neuron_commands", "cmd_ablate"))

    p = nsub.add_parser("population", help="the recorded population's z-scored response to "
                                           "ablation images (Fig. 7 right)")
    p.add_argument("data", help="the population's responses to the generated images: .csv "
                                "(image, neuron, response) or .npz")
    p.add_argument("--conditions", required=True,
                   help="CSV image, sign, alpha[, model] (as `neurons ablate --out` writes it)")
    p.add_argument("--images", default=None, help="image folder (default: the data file's)")
    p.add_argument("--reference", default=None,
                   help="the same neurons' responses to natural images (e.g. the fitting data) "
                        "to z-score against; default: every image of DATA. With it, also the "
                        "Fig. 21 test of each modelled neuron")
    p.add_argument("--reference-images", default=None,
                   help="image folder of --reference (default: its file's)")
    p.add_argument("--permutations", type=int, default=10_000,
                   help="random relabellings of the Fig. 21 permutation t-test")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--csv", default=None, help="also write the per-model table")
    p.add_argument("--html", default=None, help="also write the figure (self-contained HTML)")
    p.set_defaults(func=command("neuron_commands", "cmd_population"))

    p = nsub.add_parser("dale-features", help="features weighted alike by all neuron models")
    _add_data_args(p)
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate")
    p.add_argument("--best-only", action="store_true",
                   help="only the best model per session (as the paper)")
    p.add_argument("--top", type=int, default=10, help="rows shown when none is significant")
    p.add_argument("--csv", default=None, help="also write the whole table")
    p.set_defaults(func=command("neuron_commands", "cmd_dale_features"))

    p = nsub.add_parser("diverse-set", help="k images spanning a model's outputs (diverseSet)")
    p.add_argument("folder", help="images defining the output space")
    p.add_argument("-k", type=int, required=True, help="images to choose")
    p.add_argument("--pool", default=None, help="choose from this folder instead")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--n-components", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="CSV of the chosen files (rank, path)")
    p.add_argument("--sheet", default=None, help="PNG contact sheet of the chosen images")
    p.add_argument("--columns", type=int, default=10, help="contact sheet columns")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=command("neuron_commands", "cmd_diverse_set"))

    p = nsub.add_parser("localize", help="localize a response in an image; clear the rest")
    p.add_argument("image")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--unit", type=int, help="a readout unit of --model")
    which.add_argument("--data", help="responses file; with --neuron, localize that model")
    p.add_argument("--neuron", default=None)
    _add_data_args(p, data=False)
    p.add_argument("--out", default=None, help="overlay PNG (default: <image>_overlay.png)")
    p.add_argument("--fill", choices=("gray", "white", "black"), default="gray")
    p.add_argument("--n-disks", type=int, default=30)
    p.add_argument("--diameter", type=int, default=None,
                   help="disk diameter in px (default: the paper's 50 px per 256 px of image)")
    p.add_argument("--sigma", type=float, default=None,
                   help="smoothing in px (default: the paper's 30 px per 256 px of image)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=command("neuron_commands", "cmd_localize"))

    p = nsub.add_parser("demo", help="write a synthetic neuron data set to try the workflow")
    p.add_argument("out_dir")
    p.add_argument("--n-images", type=int, default=120)
    p.add_argument("--n-neurons", type=int, default=12)
    p.add_argument("--n-sessions", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=command("neuron_commands", "cmd_demo"))
