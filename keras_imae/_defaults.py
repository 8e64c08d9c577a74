"""The one table of defaults: every value a run, ``recommended()``, the fold models and
``compare`` take when the user sets nothing (internal; public as
:data:`keras_imae.config.recipe.DEFAULTS`).

Plain data at the bottom of the package, so the layers that apply a rule (the data loaders,
the optimizers, the collapse guard, the rejection cap) read it from here instead of repeating
it. :func:`keras_imae.config.recipe.resolve` turns it into one run's settings, printed at
the run's start and recorded in ``config.json``; why each value is what it is, here and in
the notes below.

Why each default is what it is (measured in ``benchmarks/``; ``docs/studies/dm_study.md``):

- DM's gradient does not vanish on fitted examples, so outside its emphasis window it is a
  linear loss with no minimum: AdamW's *decoupled* decay gives it one (Loshchilov & Hutter
  2019's normalised decay, so one constant carries over between dataset sizes and run
  lengths), and a cosine schedule to 0 freezes the model at the end.
- A network must not be able to carve out wrong labels one by one: a convolutional network
  sees randomly translated images, an MLP on images a random fifth of its pixels dropped.
- ``max_margin`` (this project's option) stops the push of examples beyond a margin of 16,
  without which DM's logits diverge where nothing opposes that push (clean classes).
- ``reject_margin`` (this project's option) stops the push towards a label the model gives
  to another class with ``p_k > sigmoid(3)``, while the labelled class is alive in the batch:
  DM's emphasis never falls below 1, so once the clean examples are fitted the wrong labels
  get their full share of the gradient, and under class-dependent noise they all pull the
  same way (``docs/studies/class_dependent_noise.md``).
- The warm-up (this project's schedule) trains the first quarter of the epochs with a flat
  emphasis, so regions are sorted by their majority label before the emphasis acts.
- ``pair_margins``: at the end of the warm-up the run estimates the noise transition from
  its own predictions and lowers ``reject_margin`` for the class pairs whose labels are
  swapped more often than their column's average: one R cannot serve coherent (pair-flip)
  and spread-out noise alike.
- No loss setting depends on the kind of noise: a user with real noisy labels knows neither
  its type nor its rate.
"""

DEFAULTS = {
    # -- what a run trains on -----------------------------------------------------------------
    "dataset": "digits",  # the embedded demo (scikit-learn's 1,797 8x8 digits)
    # noise: a user's own labels are never corrupted unless asked; the embedded demo is.
    "noise_type": {"digits": "symmetric", "other": "none"},
    "noise_rate": 0.4,
    # model="auto": the MLP for feature vectors and images up to 8x8 (digits), ResNet-20 for
    # RGB images, the CNN for other images.
    "tiny_image_side": 8,
    "rgb_model": "resnet20",
    "image_model": "cnn",
    # -- data: how sources are read (data.load) -------------------------------------------------
    "digits_test_size": 450,  # of 1,797: 1,347 train / 450 test, stratified, fixed seed
    "folder_image_size": (32, 32),  # (height, width) of images read from files
    "folder_test_fraction": 0.2,  # a single image folder without train/ and test/
    # streaming="auto" streams from disk above this many decoded uint8 bytes (train + test)
    "stream_above_bytes": 256 * 2**20,
    "shuffle_buffer": 10_000,  # examples, for the record readers (TFRecord, TFDS)
    # augmentation: zero-pad this share of each side, crop back (CIFAR: 4 pixels at 32x32)
    "augment_pad": 1 / 8,
    # -- optimisation -------------------------------------------------------------------------
    "optimizer": "adamw",
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "lr_step_fractions": (0.5, 0.75),  # lr_schedule="step": /10 at these shares of the epochs
    "lr_step_rate": 0.1,
    "epochs": 40,
    "batch_size": 64,
    "sgd_momentum": 0.9,
    # AdamW's decay = this * sqrt(batch_size / (training examples * epochs)): 0.52 on digits
    # (40 epochs), 0.05 on CIFAR-10 for 200 epochs at batch 128. SGD and Adam: 0 (their decay
    # is a coupled L2 penalty in the model, which the papers' SGD recipe sets itself).
    "normalized_weight_decay": 15.0,
    "adamw_weight_decay": 0.004,  # optimizers.make_optimizer's own, without a run (Keras')
    # augmentation: the papers' for their datasets, else random translation ("crop": pad
    # "augment_pad" of each side, crop back) for images under a convolutional model, else none.
    "augment_by_dataset": {"cifar10": "cifar", "cifar100": "cifar", "cifar10_n": "cifar",
                           "cifar100_n": "cifar", "svhn_cropped": "crop"},
    "conv_augment": "crop",
    # MLPs on (H, W, C) images: Dropout on the input pixels (Srivastava et al. 2014's rate).
    "image_input_dropout": 0.2,
    # -- the loss -----------------------------------------------------------------------------
    "loss": "dm",
    # DM (lam, beta) and IMAE (temperature) of the recipe "scratch" (below): the plain MLP
    # fits example by example and gains clean fit from a sharp emphasis; BatchNorm networks fit
    # regions, where a sharp emphasis starves classes learned late and holds class pairs
    # learned the wrong way round. The class's own default (lam=0.5, beta=8) is the papers'
    # (the API contract); no recipe uses it.
    "dm": {"lam": 2.0, "beta": 16.0},
    "dm_batchnorm": {"lam": 2.0, "beta": 4.0},
    "imae": {"temperature": 8.0},
    "max_margin": 16.0,  # DM and IMAE; 0 = the papers' faithful gradient
    "reject_margin": 3.0,  # DM and IMAE; 0 = the papers' faithful gradient
    # the rejection cap spares a class whose predicted mass is below this share of its labels
    "reject_alive_share": 0.5,
    "warmup_fraction": 0.25,  # DM and IMAE: flat-emphasis epochs, rounded down
    # DM and IMAE, opt-in: after the warm-up the emphasis strength rises linearly to its value
    # at the last epoch (callbacks.EmphasisWarmup's ramp_epochs) instead of switching on at
    # once. A model that fits its data only in part loses, in the first epoch of the whole
    # emphasis, hard clean examples the warm-up fitted; the ramp gained 2.2-4.3 points under
    # pair-flip on mnist1d, tabular_b and tabular (3 seeds), 2.0 on mnist1d under confusion
    # noise, but lost 0.8 on the digits demo under symmetric noise and 0.4 on tabular_b under
    # confusion noise (docs/studies/instance_dependent_noise.md).
    "emphasis_ramp": False,
    # DM and IMAE with reject_margin R: one margin per class pair, R - log(T_kc / mean_j T_jc)
    # in [0, R] (losses.pair_reject_margins), from the noise transition T the run estimates
    # in its own labels at the end of the warm-up (its first epoch at least;
    # callbacks.PairMargins). Forward correction without a T estimates it after the share
    # "warmup_fraction" of the epochs.
    "pair_margins": True,
    # ELR (Liu et al. 2020; models.EarlyLearning), off unless elr_lambda > 0 is set, on any
    # loss. compare's "elr" baseline is cross-entropy with it at the paper's CIFAR-10 setting,
    # lam=3 (its CIFAR-100 one: 7) and the running average's momentum 0.7.
    "elr_lambda": 3.0,
    "elr_momentum": 0.7,
    # -- which epoch is exported --------------------------------------------------------------
    # "last", or "best" by the accuracy on a held-out share of the noisy training labels
    # (T-corrected when the run drew the noise itself).
    "checkpoint": "last",
    "validation_fraction": 0.1,  # held out when checkpoint="best" or tune
    # -- the collapse guard (callbacks.CollapseGuard) -------------------------------------------
    "max_logit_scale": 1000.0,  # median max |logit| above which a run has diverged; 0: off
    "max_top_class_fraction": 0.98,  # predictions this constant ...
    "collapse_patience": 5,  # ... for this many epochs in a row: collapsed
    # -- tuning and comparison ----------------------------------------------------------------
    # --tune and scripts/compare.py: the grid each loss is tuned on (the same size for
    # every loss). DM: the run default (lam0, beta0) and its neighbours (lam0 / 2, beta0),
    # (lam0, beta0 / 2), (lam0, 2 beta0), so the default is always a candidate; losses
    # without hyper-parameters: the learning rate times these factors.
    "grids": {
        "imae": [dict(temperature=t) for t in (2.0, 4.0, 8.0, 16.0)],
        "gce": [dict(q=q) for q in (0.3, 0.5, 0.7, 0.9)],
        "sce": [dict(alpha=0.1, beta=1.0), dict(alpha=0.5, beta=1.0),
                dict(alpha=1.0, beta=1.0), dict(alpha=0.1, beta=0.5)],
        "nce_rce": [dict(alpha=1.0, beta=1.0), dict(alpha=1.0, beta=0.1),
                    dict(alpha=10.0, beta=1.0), dict(alpha=10.0, beta=0.1)],
        "elr": [dict(elr_lambda=lam) for lam in (1.0, 3.0, 5.0, 7.0)],
    },
    "learning_rate_factors": (0.25, 0.5, 1.0, 2.0),
    # -- a keras.applications backbone's two phases (--model=NAME) ----------------------------
    # the share of the epochs that trains the new head alone (backbone frozen), and the whole
    # network's learning rate after them, as a factor of learning_rate: none and the same
    # rate from scratch; the recipe "finetune" (below) sets both for pretrained weights.
    "head_fraction": 0.0,
    "finetune_lr_factor": 1.0,
    # compare's noisy validation share: larger than a run's, its selection ranks 4 settings
    "compare_validation_fraction": 0.2,
    # -- named recipes: one per use, each the table with its overrides ------------------------
    # RunConfig.recipe picks one (recipe.table(name) reads it). "scratch": a network trained
    # from scratch (a run, compare, recommended()): the table as it is. "folds":
    # label_issues' fold models, trained 20 epochs and judged by their probabilities on
    # held-out examples, where every architecture did best with DM lam=2, beta=8 (digits, 40%
    # pair-flip, 5 folds: F1 / ROC-AUC 0.861 / 0.957 with beta=8, 0.781 / 0.918 with
    # beta=16), without a warm-up (their scores were measured without one; so without pair
    # margins, estimated at its end). "finetune": a backbone with pretrained weights, in
    # Keras' transfer-learning guide's two phases: the first quarter of the epochs trains the
    # new head alone, then the whole network at a tenth of the learning rate (at the full
    # rate DM's logits diverged after unfreezing in 4 of 5 runs of
    # benchmarks/finetune_study.py), and DM's (IMAE's) margin cap at 4 (p = 0.982) instead of
    # 16: a pretrained network fits many examples early, and DM's weight on a fitted example
    # never falls below 1, so with the cap at 16 those pushes took the logits to a scale of
    # 9-12 while the clean labels stayed under-fitted (finetune_study, 2 seeds: +4.5 points
    # mean on the task it was tuned on, +6.4 on the second, --reverse; docs/finetuning.md).
    # Its DM emphasis peaks at p = 1/3 (lam = 0.5, the DM paper's CIFAR-100 lam) instead of
    # 2/3, beta = 4 as for the BatchNorm networks, for every backbone: after the head phase a
    # pretrained network fits under half of the clean labels (36-48%), and with the peak at
    # 2/3 and a floor of 1, 75-83% of DM's emphasis mass ended on examples with p < 0.1 or
    # p > 0.9, GCE's 13-27% (finetune_study, 4 seeds: lam = 0.5 gains +4.7 points mean on
    # the task it was tuned on, +3.9 on the second; docs/finetuning.md).
    # "auto" (the default): "finetune" for a backbone with weights, else "scratch"
    # (recipe.named).
    "recipe": "auto",
    "recipes": {
        "scratch": {},
        "folds": {"dm": {"lam": 2.0, "beta": 8.0}, "dm_batchnorm": {"lam": 2.0, "beta": 8.0},
                  "warmup_fraction": 0.0, "pair_margins": False},
        "finetune": {"head_fraction": 0.25, "finetune_lr_factor": 0.1, "max_margin": 4.0,
                     "dm": {"lam": 0.5, "beta": 4.0}, "dm_batchnorm": {"lam": 0.5, "beta": 4.0}},
    },
    "label_issue_epochs": 20,
}
