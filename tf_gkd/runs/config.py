"""The configuration of a training run: every option's default, help, type and bounds, in one place.

`TrainConfig` is a frozen dataclass whose fields are declared with `option`,
which records the option's help, its choices or bounds, and whether it is
part of what a run trains (its identity). The binaries generate their absl
flags from these fields (`tf_gkd.bin.common.define_config_flags`), and `TrainConfig` checks
every value once, when it is built: one source of truth for each option.
The resolved configuration is saved as `config.json` in the run directory.
"""

import dataclasses
import json
import os
import types

from absl import logging

from tf_gkd import distribute, errors, files, precision, rundir
from tf_gkd.data import datasets
from tf_gkd.losses import distill as distill_losses
from tf_gkd.losses import gan as gan_losses
from tf_gkd.losses import schedules
from tf_gkd.losses import vae as vae_losses
from tf_gkd.networks import factory

MODELS = ("gan", "vae", "distill")
LR_DECAYS = ("none", "cosine")
FAST_LAYERS = ("auto", "off")
STUDENT_INITS = ("random", "teacher")


class ConfigError(errors.Error, ValueError):
    """A configuration value is invalid, or disagrees with the run being resumed.

    `field` names the offending option when there is one (binaries name its flag).
    """

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def option(default, help, *, choices=None, minimum=None, above=None, maximum=None, below=None, check=None, identity=()):
    """A `TrainConfig` field: its default, its help, and what values it takes.

    Args:
      default: the default value (its type is the field's annotation).
      help: one sentence for --help and docs/flags.md.
      choices: the allowed values of a string option.
      minimum, above, maximum, below: bounds of a number option (`minimum` ≤ x,
        `above` < x, x ≤ `maximum`, x < `below`); None values always pass.
      check: a function of the value that raises ValueError, saying why, when
        the value is not valid (for values with a syntax of their own).
      identity: the models (of `MODELS`) whose runs this option defines: a run
        resumed with another value would mix two experiments, so it is refused.
        Empty: the option says how the run runs, and may change on resume.
    """
    return dataclasses.field(
        default=default,
        metadata=dict(
            help=help,
            choices=choices,
            minimum=minimum,
            above=above,
            maximum=maximum,
            below=below,
            check=check,
            identity=tuple(identity),
        ),
    )


def describe_bounds(metadata):
    """The bounds of an option in words ("positive", ">= 1", "in [0, 1)"), or None."""
    low, high = metadata["minimum"], metadata["maximum"]
    above, below = metadata["above"], metadata["below"]
    if (low is not None or above is not None) and (high is not None or below is not None):
        left = f"[{low}" if low is not None else f"({above}"
        right = f"{high}]" if high is not None else f"{below})"
        return f"in {left}, {right}"
    if above == 0:
        return "positive"
    for value, words in ((low, ">="), (above, ">"), (high, "<="), (below, "<")):
        if value is not None:
            return f"{words} {value}"
    return None


def _within(value, metadata):
    m = metadata
    return (
        (m["minimum"] is None or value >= m["minimum"])
        and (m["above"] is None or value > m["above"])
        and (m["maximum"] is None or value <= m["maximum"])
        and (m["below"] is None or value < m["below"])
    )


def value_type(field):
    """The Python type of a field's values: int, float, bool or str (None aside)."""
    annotation = field.type
    if isinstance(annotation, types.UnionType):
        (annotation,) = [t for t in annotation.__args__ if t is not type(None)]
    return annotation


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Defaults are the quickstart teacher."""

    model: str = option(
        "gan",
        "What to train: gan, vae (the generator_* options then configure its decoder), or distill "
        "(a student generator of the generator_* options; see gkd-distill).",
        choices=MODELS,
        identity=MODELS,
    )
    # Data.
    dataset: str = option(
        "fashion_mnist",
        "Dataset: a tensorflow-datasets name (any with an image feature: mnist, fashion_mnist, cifar10, "
        "svhn_cropped, celeb_a, ...) or folder:DIR (a directory of PNG/JPEG images, one level of class "
        "subfolders giving labels).",
        check=datasets.check_name,
        identity=MODELS,
    )
    image_size: int | None = option(
        None,
        "Side S of the S x S training images: centre-cropped and resized (default: the dataset's own size, when "
        "its images share one square size).",
        minimum=8,
        identity=MODELS,
    )
    grayscale: bool = option(False, "Convert colour images to grey.", identity=MODELS)
    conditional: bool = option(
        False,
        "Class-conditional models: the generator takes a class label with z (and so do the discriminator and the "
        "VAE's encoder); the dataset must have labels. Distillation: the teacher must be conditional too.",
        identity=MODELS,
    )
    data_dir: str | None = option(None, "tensorflow-datasets data directory (default: tfds's own).")
    raw_data_dir: str | None = option(
        None,
        "Directory with the four raw IDX .gz files to prepare the dataset from, offline "
        "(default for fashion_mnist: /usr/share/datasets/fashion-mnist, from Debian's dataset-fashion-mnist).",
    )
    download: bool = option(False, "Let tensorflow-datasets download the data (needs internet).")
    # Networks.
    z_dim: int = option(100, "Latent size.", minimum=1, identity=MODELS)
    generator_kind: str = option("conv", "Generator architecture.", choices=factory.KINDS, identity=MODELS)
    generator_width: float = option(1.0, "Generator width multiplier.", above=0, identity=MODELS)
    generator_depth: int | None = option(None, "Generator depth (default: the kind's own).", minimum=0, identity=MODELS)
    discriminator_kind: str = option(
        "conv", "Discriminator architecture.", choices=factory.TRUNK_KINDS, identity=("gan", "distill")
    )
    discriminator_width: float = option(1.0, "Discriminator width multiplier.", above=0, identity=("gan", "distill"))
    discriminator_depth: int | None = option(
        None, "Discriminator depth (default: the kind's own).", minimum=0, identity=("gan", "distill")
    )
    # Without dropout the quickstart teacher is better and faster (docs/results.md).
    discriminator_dropout: float = option(0.0, "Dropout before the discriminator's logit.", minimum=0, below=1)
    # VAE (model=vae): the generator_* fields configure the decoder, and
    # g_learning_rate is the learning rate of encoder and decoder together.
    encoder_kind: str = option(
        "conv", "VAE encoder architecture (model=vae).", choices=factory.TRUNK_KINDS, identity=("vae",)
    )
    encoder_width: float = option(1.0, "VAE encoder width multiplier.", above=0, identity=("vae",))
    encoder_depth: int | None = option(
        None, "VAE encoder depth (default: the kind's own).", minimum=0, identity=("vae",)
    )
    likelihood: str = option(
        "bernoulli",
        "VAE reconstruction likelihood on [0, 1] pixels: bernoulli (cross-entropy) or gaussian (fixed sigma).",
        choices=vae_losses.LIKELIHOODS,
        identity=("vae",),
    )
    gaussian_sigma: float = option(
        0.1, "Fixed sigma of the gaussian likelihood, on [0, 1] pixels.", above=0, identity=("vae",)
    )
    beta: float = option(1.0, "Weight of the VAE's KL term (1: the ELBO).", minimum=0, identity=("vae",))
    # Distillation (model=distill): the generator_* fields configure the student; z_dim and
    # dataset are the teacher's. L = pixel_weight·pixel + adversarial_weight·L_GAN + feature_weight·features
    # + distribution_weight·energy distance.
    teacher: str | None = option(
        None, "Run directory of the teacher (a finished gkd-train run).", identity=("distill",)
    )
    init_discriminator: bool = option(
        False, "Start the student's discriminator from the teacher's.", identity=("distill",)
    )
    student_init: str = option(
        "random",
        "How the student starts: random, or teacher (a narrower copy of the teacher's generator: at each layer "
        "the channels of largest L1 norm; the student must be of the teacher's kind and depth).",
        choices=STUDENT_INITS,
        identity=("distill",),
    )
    pixel_loss: str = option("l1", "Pixel mimicry loss.", choices=distill_losses.PIXEL_LOSSES, identity=("distill",))
    pixel_weight: float = option(1.0, "Weight of pixel mimicry.", minimum=0, identity=("distill",))
    adversarial_weight: float = option(
        0.0, "λ: weight of the adversarial term (0: no GAN loss).", minimum=0, identity=("distill",)
    )
    feature_weight: float = option(0.0, "Weight of discriminator-feature mimicry.", minimum=0, identity=("distill",))
    distribution_weight: float = option(
        0.0,
        "Weight of the distribution term: the energy distance between the student's batch and the "
        "--distribution_target batch in the discriminator's features.",
        minimum=0,
        identity=("distill",),
    )
    distribution_target: str = option(
        "teacher",
        "What the distribution term pulls the student's batch towards: the teacher's images or real ones.",
        choices=distill_losses.DISTRIBUTION_TARGETS,
        identity=("distill",),
    )
    pixel_weight_schedule: str = option(
        "constant",
        "Schedule of the pixel weight over the run: constant, ramp_up:A:B or ramp_down:A:B (A, B: shares of "
        "--train_steps; e.g. ramp_down:0.5:1 decays it to 0 over the second half).",
        check=schedules.parse,
        identity=("distill",),
    )
    adversarial_weight_schedule: str = option(
        "constant",
        "Schedule of the discriminator's terms (λ, --feature_weight, --distribution_weight) over the run, as "
        "--pixel_weight_schedule (e.g. ramp_up:0.25:0.5).",
        check=schedules.parse,
        identity=("distill",),
    )
    posterior_fraction: float = option(
        0.5,
        "VAE teachers: share of each batch with z from the teacher encoder's posterior on real images.",
        minimum=0,
        maximum=1,
        identity=("distill",),
    )
    offline_pairs: int = option(
        0,
        "Offline distillation: write this many (z, teacher image) pairs first, then train from them alone "
        "(0: query the teacher online).",
        minimum=0,
        identity=("distill",),
    )
    # Optimisation.
    loss: str = option("non_saturating", "GAN loss.", choices=gan_losses.LOSSES, identity=("gan", "distill"))
    d_steps: int = option(1, "Discriminator updates per generator update.", minimum=1)
    gp_weight: float = option(10.0, "Gradient-penalty weight (wasserstein loss).", minimum=0)
    r1_weight: float = option(
        0.0,
        "γ of the discriminator's R1 penalty (γ/2)·E‖∇D(x)‖² on real images (0: none).",
        minimum=0,
        identity=("gan", "distill"),
    )
    r1_interval: int = option(
        1,
        "Lazy R1: compute the penalty on every N-th discriminator update only, weighted N times "
        "(the same penalty on average for a fraction of its cost).",
        minimum=1,
        identity=("gan", "distill"),
    )
    real_label: float = option(
        1.0, "Target for real images (<1: one-sided label smoothing; sigmoid losses only).", above=0, maximum=1
    )
    ema_decay: float = option(
        0.999, "Decay of the generator weight average that is saved; 0 disables.", minimum=0, below=1
    )
    # A generator learning rate 4x the discriminator's trains the quickstart teacher far
    # better than equal rates (docs/results.md).
    g_learning_rate: float = option(
        8e-4, "Adam learning rate of the generator (gan), the whole VAE (vae) or the student (distill).", minimum=0
    )
    d_learning_rate: float = option(2e-4, "Discriminator Adam learning rate.", minimum=0)
    lr_decay: str = option(
        "none", "Learning-rate schedule: none (constant) or cosine (to 0 at --train_steps).", choices=LR_DECAYS
    )
    beta_1: float = option(0.5, "Adam beta_1.", minimum=0, maximum=1)
    beta_2: float = option(0.999, "Adam beta_2.", minimum=0, maximum=1)
    batch_size: int = option(64, "Global batch size (split across the replicas of --strategy).", minimum=1)
    train_steps: int = option(3000, "Total generator (gan), VAE (vae) or student (distill) updates.", minimum=1)
    seed: int = option(0, "Seed of weights, latents and data order.")
    # Runtime.
    strategy: str = option(
        "default",
        "tf.distribute strategy: default (one device), mirrored (this machine's GPUs), multi_worker (machines "
        "listed by --cluster_resolver).",
        choices=distribute.STRATEGIES,
    )
    cluster_resolver: str = option(
        "tf_config",
        "Where --strategy=multi_worker finds its cluster: tf_config (the TF_CONFIG environment variable) or slurm "
        "(the Slurm job step's environment, through TensorFlow's SlurmClusterResolver).",
        choices=distribute.CLUSTER_RESOLVERS,
    )
    cluster_timeout: float = option(
        300.0,
        "Seconds a --strategy=multi_worker run waits at its start for every worker of its cluster to answer "
        "before it fails, naming those that did not.",
        minimum=1,
    )
    jit_compile: bool = option(False, "Compile the train step with XLA.")
    mixed_precision: str = option(
        "auto",
        "Keras dtype policy: auto (mixed_bfloat16 on CPUs with AVX512-BF16/AMX and on GPUs of compute capability "
        "8.0+, mixed_float16 on older GPUs with tensor cores, float32 otherwise), off (float32), mixed_bfloat16, "
        "or mixed_float16 (with loss scaling).",
        choices=precision.POLICIES,
    )
    fast_layers: str = option(
        "auto",
        "Train with tf_gkd's faster layers (auto: fused batch normalisation; under mixed_bfloat16 without a GPU, "
        "matrix-product kernel gradients of stride-2 convolutions) or Keras's own (off). Saved models always "
        "hold Keras's own.",
        choices=FAST_LAYERS,
    )
    steps_per_execution: int = option(1, "Train steps fused into one tf.function call.", minimum=1)
    # Outputs.
    log_every: int = option(100, "Steps between TensorBoard scalar writes.", minimum=1)
    sample_every: int = option(500, "Steps between sample grids.", minimum=1)
    checkpoint_every: int = option(500, "Steps between checkpoints.", minimum=1)
    keep_checkpoints: int = option(3, "Checkpoints kept.", minimum=1)
    num_samples: int = option(64, "Images in each sample grid.", minimum=1)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_field(field, getattr(self, field.name))

        def require(ok, message, field=None):
            if not ok:
                raise ConfigError(message, field)

        if self.model == "distill":
            require(
                bool(self.teacher),
                "Distillation needs a teacher: pass --teacher=RUN_DIR of a gkd-train run.",
                "teacher",
            )
            require(
                self.d_steps == 1,
                f"Distillation takes one discriminator step per step. Received: d_steps={self.d_steps}",
                "d_steps",
            )
            require(
                self.offline_pairs == 0 or self.offline_pairs >= self.batch_size,
                f"offline_pairs must be 0 (online) or at least one batch ({self.batch_size}). "
                f"Received: offline_pairs={self.offline_pairs}",
                "offline_pairs",
            )
        require(
            self.real_label == 1.0 or self.loss in gan_losses.SIGMOID_LOSSES,
            f"real_label < 1 (label smoothing) needs a sigmoid loss, one of {gan_losses.SIGMOID_LOSSES}. "
            f"Received: loss={self.loss!r}, real_label={self.real_label}",
            "real_label",
        )
        require(
            self.strategy != "multi_worker" or self.steps_per_execution == 1,
            "--strategy=multi_worker runs one step per execution: Keras 3.15's fused steps do not run under "
            f"MultiWorkerMirroredStrategy. Pass --steps_per_execution=1. Received: steps_per_execution="
            f"{self.steps_per_execution}",
            "steps_per_execution",
        )
        for name in ("train_steps", "log_every", "sample_every", "checkpoint_every"):
            value = getattr(self, name)
            require(
                value % self.steps_per_execution == 0,
                f"{name} must be a multiple of steps_per_execution={self.steps_per_execution} "
                f"(steps run in fused groups of that size). Received: {name}={value}",
                name,
            )


def _check_field(field, value):
    """Raises ConfigError unless `value` is among the field's choices and within its bounds."""
    name, metadata = field.name, field.metadata
    if value is None:
        return
    choices = metadata["choices"]
    if choices is not None and value not in choices:
        raise ConfigError(f"{name} must be one of {choices}. Received: {name}={value!r}", name)
    bounds = describe_bounds(metadata)
    if bounds is not None and not _within(value, metadata):
        raise ConfigError(f"{name} must be {bounds}. Received: {name}={value}", name)
    if metadata["check"] is not None:
        try:
            metadata["check"](value)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}", name) from None


def identity_fields(model):
    """The names of the fields that define a run of `model`: a resumed run must agree on them."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if model in f.metadata["identity"])


RESUMES_KEY = "resumes"  # In config.json: the changes each resume made, with the step they took effect.


def read_saved(workdir):
    """The `config.json` of the run in `workdir` as a dict, or None when there is none."""
    path = os.path.join(workdir, rundir.CONFIG_FILE)
    if not os.path.exists(path):
        return None
    return files.read_json_object(path, ConfigError, "restore it from a backup, or use a new --workdir")


def check_resume(config, workdir):
    """Checks that `config` may resume the run in `workdir` (if it holds one); writes nothing.

    A resumed run may change how long or how it runs (steps, logging, learning
    rates, seed, speed options) but not what it trains: that would silently mix
    two experiments. An option that a run's `config.json` lacks was added
    since: the run was made with its default.
    """
    saved = read_saved(workdir)
    if saved is None:
        return
    changes = _changes(saved, config, identity_fields(config.model))
    changed = [f"{name}: {was!r} in the run, {now!r} now" for name, (was, now) in changes]
    if changed:
        raise ConfigError(
            f"{workdir} holds a run with another configuration ({'; '.join(changed)}). "
            "Use a new --workdir, or the run's own flags to resume it."
        )


def _changes(saved, config, names):
    """[(name, (saved value, config's value))] of the fields `names` that differ."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return [
        (name, (saved.get(name, defaults[name]), getattr(config, name)))
        for name in names
        if saved.get(name, defaults[name]) != getattr(config, name)
    ]


def record(config, workdir, step):
    """Writes `config.json` as training starts at `step` (after `check_resume`); returns this resume's changes.

    A run resumed with other options (say, a learning rate or more steps) keeps
    the history in the file: `resumes` lists each resume's changed options
    ({name: [before, after]}) with the step at which they took effect, and the
    changes are logged. Before the first step nothing has trained yet, so the
    file is simply replaced.
    """
    saved = read_saved(workdir) or {}
    resumes = list(saved.get(RESUMES_KEY, []))
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    changes = {name: list(values) for name, values in _changes(saved, config, names)} if saved and step else {}
    if changes:
        resumes.append({"step": step, "changes": changes})
        logging.info(
            "Resuming at step %d with changed options: %s.",
            step,
            ", ".join(f"{name} {was!r} → {now!r}" for name, (was, now) in changes.items()),
        )
    values = dataclasses.asdict(config) | ({RESUMES_KEY: resumes} if resumes else {})
    files.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", os.path.join(workdir, rundir.CONFIG_FILE))
    return changes
